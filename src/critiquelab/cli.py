"""Command line: parses arguments, configures logging, calls one stage function. Nothing else.

`_COMMANDS` maps each subcommand to its handler, which runs the stage and returns the one-line
summary its stage module writes (`summary_line` there).

Exit status: 0 done; 1 failed (an error that is not the input's, e.g. a full disk, or failed cells
of an experiment); 2 bad input (one line naming the file:line, key or value, and the fix);
3 incomplete (some items failed, e.g. a teacher endpoint that went down; finished items are kept
and rerunning the same command retries the rest); 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from critiquelab import gguf
from critiquelab.io import Incomplete, UserError
from critiquelab.logs import setup_logging

__all__ = ["main", "setup_logging", "EXIT_FAILED", "EXIT_USER", "EXIT_INCOMPLETE"]

EXIT_FAILED, EXIT_USER, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 1, 2, 3, 130

log = logging.getLogger("critiquelab")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other user error (exit 2)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="critiquelab", description="Critique Fine-Tuning toolkit",
                                epilog="exit status: 0 done, 1 failed, 2 bad input, 3 incomplete (rerun to retry "
                                       "the failed items), 130 interrupted (rerun to resume)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name: str, help: str, config: bool = True, overwrite: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        if config:
            s.add_argument("--config", help="YAML recipe (a RunConfig; the stage's section is used)")
            s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4")
        if overwrite:
            s.add_argument("--overwrite", action="store_true",
                           help="replace an earlier critiquelab output of the same kind made with other settings "
                                "(never a directory critiquelab did not make)")
        return s

    s = cmd("world", "generate the synthetic math world")
    s.add_argument("--out", required=True)

    s = cmd("pretrain", "pretrain the tiny base model from scratch on a world")
    s.add_argument("--world", required=True)
    s.add_argument("--out", required=True)

    s = cmd("sample", "sample noisy candidate solutions (or import them: sample.source=import); resumable")
    s.add_argument("--problems")
    s.add_argument("--model", help="shortcut for sample.model= (a model directory or hub name)")
    s.add_argument("--out", required=True)

    s = cmd("seeds", "rank seed problems for one-shot CFT by the base model's pass rate over k samples")
    s.add_argument("--problems", required=True)
    s.add_argument("--model", required=True, help="the base model (a directory or hub name)")
    s.add_argument("--k", type=int, default=8, help="samples per problem (sample.n_per_problem; default 8)")
    s.add_argument("--out", required=True, help="directory for solutions.jsonl and seeds.json")

    s = cmd("critique", "critique solutions with a teacher (resumable store)")
    s.add_argument("--input", required=True)
    s.add_argument("--out", required=True, help="directory for critiques.jsonl and ledger.json")
    s.add_argument("--shard", help="i/n: this machine's share of the job")
    s.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; send nothing")

    s = cmd("refine", "refine solutions from their critiques with a teacher (critique.refine_prompt; resumable store)")
    s.add_argument("--input", required=True, help="the solutions the critiques are of (solutions.jsonl from sample)")
    s.add_argument("--critiques", required=True, help="their critique store (critique/critiques.jsonl)")
    s.add_argument("--out", required=True, help="directory for refined.jsonl and ledger.json")
    s.add_argument("--shard", help="i/n: this machine's share of the job")
    s.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; send nothing")

    s = cmd("build", "build CFT / SFT / CGD training sets, filtered, with exports")
    s.add_argument("--solutions")
    s.add_argument("--critiques", help="the critique store (critique/critiques.jsonl)")
    s.add_argument("--teacher-solutions", help="for sft_teacher: solutions.jsonl of a critique run with "
                   "critique.prompt=solve_paper")
    s.add_argument("--refined", help="for cgd: refined.jsonl of `critiquelab refine`")
    s.add_argument("--from-alpaca", help="import a WebInstruct-CFT style file (instruction/input/output)")
    s.add_argument("--out", required=True)

    s = cmd("train", "fine-tune a model on a built dataset (SFT or CFT; full or LoRA); resumable")
    s.add_argument("--model", help="shortcut for train.model=")
    s.add_argument("--data", help="shortcut for train.data=")
    s.add_argument("--out", help="shortcut for train.output_dir=")
    s.add_argument("--world", help="world directory (when selecting on world-validation)")
    s.add_argument("--benchmarks-dir")
    s.add_argument("--dry-run", action="store_true", help="print the effective config, world size, steps, tokens")
    s.add_argument("--examples", type=int, help="dry run without the dataset: plan for this many examples")

    s = cmd("rl", "critique RL: GRPO with verdict rewards on a fixed, balanced pool of solutions (resumable)")
    s.add_argument("--model", help="shortcut for rl.model= (a base, or a CFT/SFT model)")
    s.add_argument("--solutions", help="shortcut for rl.solutions= (solutions.jsonl from sample)")
    s.add_argument("--out", help="shortcut for rl.output_dir=")
    s.add_argument("--dry-run", action="store_true", help="print the pool, steps and generated tokens; run nothing")

    s = cmd("eval", "evaluate a model on benchmarks (resumable)")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--benchmarks", help="shortcut for eval.benchmarks= (comma-separated: world, math-500, gsm8k, ...)")
    s.add_argument("--limit", help="shortcut for eval.limit= (the first N items of each benchmark)")
    s.add_argument("--world", help="world directory (for the world benchmarks)")
    s.add_argument("--benchmarks-dir")

    s = cmd("judge", "a critic judges solutions (resumable; settings in the critic section)")
    s.add_argument("--critic", required=True, help="the critic model (directory or hub name; with "
                   "critic.backend=openai, the served name unless critic.api_model is set)")
    s.add_argument("--solutions", required=True)
    s.add_argument("--out", required=True)

    s = cmd("eval-critic", "verdict accuracy on labelled solutions (or a critic benchmark), and critic-filtered "
            "best-of-N")
    s.add_argument("--critic", required=True)
    s.add_argument("--solutions", help="solutions.jsonl with 'correct' labels (from sample)")
    s.add_argument("--benchmark", help="a critic benchmark instead of --solutions: prmbench")
    s.add_argument("--benchmarks-dir")
    s.add_argument("--out", required=True)

    s = cmd("grade", "grade a JSONL of {response, reference}", config=False, overwrite=False)
    s.add_argument("--responses", required=True)

    s = cmd("view", "one self-contained HTML page of the samples: solutions with their critiques, datasets, "
            "judgements, eval items or a whole run (opens from disk)", config=False, overwrite=False)
    s.add_argument("paths", nargs="+", metavar="PATH", help="files or output directories critiquelab wrote; several "
                   "are joined by id (e.g. solutions.jsonl critique/critiques.jsonl)")
    s.add_argument("--out", required=True, help="the HTML file to write (never one critiquelab did not write)")
    s.add_argument("--benchmarks-dir", help="the folder holding prmbench/ (for a PRMBench eval-critic output)")

    s = cmd("report", "(re)write the report of a run directory", config=False)
    s.add_argument("run_dir")
    s.add_argument("--publish", metavar="DIR", help="also copy the report (md, html, json, PNGs, cells, manifest) "
                   "to DIR, e.g. docs/results/NAME (--overwrite replaces an earlier published report there)")

    exp = cmd("experiment", "run (or resume) a grid: models x methods x seeds x data sizes x sources x teachers",
              overwrite=False)
    exp.add_argument("--out", required=True)
    exp.add_argument("--dry-run", action="store_true", help="check the grid and list its cells; run nothing")

    cell = cmd("cell", "run one cell of an experiment from its job spec (what the executors run)", config=False,
               overwrite=False)
    cell.add_argument("spec", help="RUN/jobs/<cell>.json")

    demo = cmd("demo", "run the whole offline loop: world, base, SFT vs CFT, eval, report", overwrite=False)
    demo.add_argument("--preset", default="fast", help="fast (make demo), full or gpu (recipes/demo-*.yaml)")
    demo.add_argument("--out", default="runs/demo")
    for s in (exp, demo):
        s.add_argument("--benchmarks-dir")
        s.add_argument("--models", metavar="A,B", help="run only these entries of the model axis in this "
                       "invocation (one machine each, say); the others' finished cells in the run dir are kept and "
                       "the report covers every cell finished so far")
    return p


def _config(args, **shortcuts):
    """The run config: recipe < overrides < shortcut flags (given ones only), all checked at once."""
    from critiquelab.config import RunConfig, load_config

    # Paths are quoted (a directory named `yes` or `2024` stays text); eval.limit stays a number.
    flags = [f"{key}={value if key == 'eval.limit' else json.dumps(value)}" for key, value in shortcuts.items()
             if value is not None]
    return load_config(RunConfig, args.config, [*args.overrides, *flags])


def _given(args, dotted: str) -> bool:
    """Whether the user set `dotted` (e.g. build.methods): as an override or in the --config recipe."""
    import yaml

    if any(o.split("=", 1)[0].strip() == dotted for o in getattr(args, "overrides", [])):
        return True
    node = yaml.safe_load(Path(args.config).read_text()) if getattr(args, "config", None) else None
    for key in dotted.split("."):  # (the recipe was read and checked by _config already)
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


# ---------------------------------------------------------------------------------------------
# One handler per subcommand: it runs the stage and returns the stage module's summary line (and an
# exit status when that is not 0). Each imports its stage module itself: a command loads what it runs.


def _world(args):
    from critiquelab import world

    counts = world.write_world(_config(args).world, args.out, overwrite=args.overwrite)
    return world.summary_line(counts, args.out)


def _pretrain(args):
    from critiquelab import pretrain

    cfg = _config(args)
    stats = pretrain.pretrain(args.world, args.out, cfg.model, cfg.pretrain, overwrite=args.overwrite)
    return pretrain.summary_line(stats, args.out)


def _sample(args):
    from critiquelab import sample

    cfg = _config(args)
    c = cfg.sample
    s = sample.run_sample(args.problems, args.out, c, args.model or c.model, vllm=cfg.vllm, overwrite=args.overwrite)
    generators = [g.get("model") for g in (c.generators or {}).values() if isinstance(g, dict)]
    return sample.summary_line(s, args.out) + gguf.note(args.model or c.model, *generators)


def _seeds(args):
    from dataclasses import replace

    from critiquelab import sample

    cfg = _config(args)
    c = replace(cfg.sample, source="model", n_per_problem=args.k)
    res = sample.run_seeds(args.problems, args.out, c, args.model, vllm=cfg.vllm, overwrite=args.overwrite)
    return sample.seeds_summary_line(res, args.out, args.k) + gguf.note(args.model)


def _critique(args):
    """`critique` and `refine` (the same stage with the section's refine prompt and the critiques)."""
    from dataclasses import replace

    from critiquelab import critique

    cfg = _config(args)
    teacher = replace(cfg.critique, prompt=cfg.critique.refine_prompt) if args.cmd == "refine" else cfg.critique
    try:
        s = critique.run_critique(args.input, args.out, teacher, critiques=getattr(args, "critiques", None),
                                  shard=args.shard, dry_run=args.dry_run, vllm=cfg.vllm, overwrite=args.overwrite)
    except Incomplete as e:  # the usual summary first, then main's "incomplete" line
        if e.summary:
            print(critique.summary_line(e.summary, args.out), file=sys.stderr)
        raise
    local = teacher.teacher in ("hf", "vllm")
    return critique.summary_line(s, args.out) + gguf.note(teacher.model if local else None)


def _build(args):
    if args.from_alpaca:
        from critiquelab import export
        from critiquelab.io import output_dir

        with output_dir(args.out, "dataset", overwrite=args.overwrite) as (out, _):
            n = export.import_alpaca_cft(args.from_alpaca, out / "cft.jsonl")
        return export.summary_line(n, args.out)
    from critiquelab import build

    if not (args.solutions and args.critiques):
        raise UserError("build needs --solutions and --critiques (or --from-alpaca FILE)")
    res = build.run_build(args.solutions, args.critiques, args.out, _config(args).build,
                          teacher_solutions=args.teacher_solutions, overwrite=args.overwrite,
                          pick_methods=not _given(args, "build.methods"), refined=args.refined)
    return build.summary_line(res, args.out)


def _train(args):
    from critiquelab import train

    cfg = _config(args, **{"train.model": args.model, "train.data": args.data, "train.output_dir": args.out}).train
    if args.dry_run:
        p = train.plan(cfg, examples=args.examples)
        print(json.dumps(p, indent=2))
        return train.plan_line(p)
    s = train.run_train(cfg, world_dir=args.world, bench_dir=args.benchmarks_dir, overwrite=args.overwrite,
                        out_label="--out" if args.out else "train.output_dir")
    return train.summary_line(s, cfg.output_dir) + gguf.note(cfg.model)


def _rl(args):
    from critiquelab import rl

    cfg = _config(args, **{"rl.model": args.model, "rl.solutions": args.solutions, "rl.output_dir": args.out}).rl
    if args.dry_run:
        print(json.dumps(rl.plan_rl(cfg), indent=2))
        return "dry run: nothing trained"
    return rl.summary_line(rl.run_rl(cfg, overwrite=args.overwrite), cfg.output_dir) + gguf.note(cfg.model)


def _eval(args):
    from critiquelab import evaluate

    cfg = _config(args, **{"eval.benchmarks": args.benchmarks, "eval.limit": args.limit})
    s = evaluate.run_eval(args.model, args.out, cfg.eval, world_dir=args.world, bench_dir=args.benchmarks_dir,
                          vllm=cfg.vllm, overwrite=args.overwrite)
    return evaluate.summary_line(s, args.out) + gguf.note(args.model)


def _judge(args):
    from critiquelab import critic

    cfg = _config(args)
    judgements = critic.judge(args.critic, args.solutions, args.out, cfg.critic, vllm=cfg.vllm, overwrite=args.overwrite)
    return critic.judge_summary_line(judgements) + gguf.note(args.critic)


def _eval_critic(args):
    from critiquelab import critic, prmbench

    if (args.solutions is None) == (args.benchmark is None):
        raise UserError("give --solutions FILE (labelled solutions) or --benchmark prmbench, one of the two")
    if args.benchmark is not None and args.benchmark not in prmbench.CRITIC_BENCHMARKS:
        raise UserError(f"--benchmark {args.benchmark}: unknown critic benchmark (valid: "
                        f"{', '.join(prmbench.CRITIC_BENCHMARKS)})")
    cfg = _config(args)
    if args.benchmark is not None:
        res = prmbench.run_prmbench(args.critic, args.out, cfg.critic, bench_dir=args.benchmarks_dir, vllm=cfg.vllm,
                                    overwrite=args.overwrite)
        return prmbench.summary_line(res, args.out) + gguf.note(args.critic)
    res = critic.run_eval_critic(args.critic, args.solutions, args.out, cfg.critic, vllm=cfg.vllm,
                                 overwrite=args.overwrite)
    return critic.summary_line(res, args.out) + gguf.note(args.critic)


def _grade(args):
    from critiquelab import grading
    from critiquelab.io import check_rows, read_jsonl

    rows = read_jsonl(args.responses, what="responses to grade")
    check_rows(rows, args.responses, {"response": str, "reference": (str, int, float)}, optional={"question": str})
    grades = [grading.grade(r["response"], str(r["reference"]), r.get("question")) for r in rows]
    for g in grades:
        print(f"{g.correct}\t{g.reason}\t{g.extracted}")
    return grading.summary_line(grades)


def _report(args):
    from critiquelab import report

    if args.publish:
        report.check_publish(args.run_dir, args.publish, overwrite=args.overwrite)
    path = report.write_report(args.run_dir)
    published = report.publish(args.run_dir, args.publish, overwrite=args.overwrite) if args.publish else None
    return report.summary_line(path, published)


def _view(args):
    from critiquelab import view

    return view.summary_line(view.write_view(args.paths, args.out, bench_dir=args.benchmarks_dir), args.out)


def _cell(args):
    from critiquelab import cell

    res = cell.run_cell(Path(args.spec))
    return cell.summary_line(res, args.spec), EXIT_FAILED if res["status"] == "failed" else 0


def _experiment(args):
    """`experiment` and `demo` (a preset experiment)."""
    from critiquelab import experiment

    if args.cmd == "experiment" and not args.config:
        raise UserError("experiment needs --config EXP.yaml (see recipes/demo-full.yaml)")
    cfg = _config(args) if args.config else experiment.preset_config(args.preset, args.overrides)
    if getattr(args, "dry_run", False):
        from critiquelab.costs import describe_plan

        plan = experiment.plan_experiment(cfg, args.benchmarks_dir, offline=True)
        for c in plan.cells:
            print(f"{c.name}\tmodel={c.model} method={c.method} seed={c.seed} source={c.source} teacher={c.teacher} "
                  f"data_size={'all' if c.data_size is None else c.data_size}")
        print(describe_plan(cfg, plan, args.benchmarks_dir))
        return experiment.plan_line(cfg, plan)
    only = [m for m in (args.models or "").split(",") if m] or None
    res = experiment.run_experiment(cfg, args.out, bench_dir=args.benchmarks_dir, only_models=only)
    return experiment.summary_line(res, args.out), EXIT_FAILED if res["failed"] else 0


_COMMANDS = {"world": _world, "pretrain": _pretrain, "sample": _sample, "seeds": _seeds, "critique": _critique,
             "refine": _critique, "build": _build, "train": _train, "rl": _rl, "eval": _eval, "judge": _judge,
             "eval-critic": _eval_critic, "grade": _grade, "view": _view, "report": _report, "experiment": _experiment,
             "cell": _cell, "demo": _experiment}


def _parse(argv: list[str] | None):
    """Options and `key=value` overrides in any order (`sample a=1 --model M b=2`)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.verbose)
    t0 = time.time()
    try:
        summary = _COMMANDS[args.cmd](args)
    except UserError as e:
        print(f"critiquelab {args.cmd}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USER
    except Incomplete as e:
        print(f"critiquelab {args.cmd}: incomplete: {e}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except OSError as e:  # full disk, permissions, ...: finished work is already on disk
        out = getattr(args, "out", None) or getattr(args, "run_dir", None)
        kept = f"; finished work so far is kept in {out} (rerun the same command to resume)" if out else ""
        print(f"critiquelab {args.cmd}: error: {e.strerror or e}: {e.filename or ''}{kept}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:  # (Interrupted: the stage says what a rerun will do)
        what = str(e) or ("rerun the same command (it resumes from the last checkpoint, if one was saved)"
                          if args.cmd in ("train", "pretrain") else "rerun the same command to resume")
        print(f"critiquelab {args.cmd}: interrupted: {what}", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary, rc = summary if isinstance(summary, tuple) else (summary, 0)
    print(f"{summary} [{time.time() - t0:.0f}s]", file=sys.stderr if rc else sys.stdout)
    return rc


if __name__ == "__main__":
    sys.exit(main())
