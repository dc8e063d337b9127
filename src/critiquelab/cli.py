"""Command line: parses arguments, configures logging, calls one stage function. Nothing else.

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

from critiquelab.io import Incomplete, UserError
from critiquelab.llm import fit_note
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

    s = cmd("build", "build CFT / SFT training sets, filtered, with exports")
    s.add_argument("--solutions")
    s.add_argument("--critiques", help="the critique store (critique/critiques.jsonl)")
    s.add_argument("--teacher-solutions", help="for sft_teacher: solutions.jsonl of a critique run with "
                   "critique.prompt=solve_paper")
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

    s = cmd("eval-critic", "verdict accuracy on labelled solutions, and critic-filtered best-of-N")
    s.add_argument("--critic", required=True)
    s.add_argument("--solutions", required=True, help="solutions.jsonl with 'correct' labels (from sample)")
    s.add_argument("--out", required=True)

    s = cmd("grade", "grade a JSONL of {response, reference}", config=False, overwrite=False)
    s.add_argument("--responses", required=True)

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


def _run(args) -> str | tuple[str, int]:
    if args.cmd == "world":
        from critiquelab.world import write_world

        counts = write_world(_config(args).world, args.out, overwrite=args.overwrite)
        return f"wrote world to {args.out}: {counts}"
    if args.cmd == "pretrain":
        from critiquelab.pretrain import pretrain

        cfg = _config(args)
        stats = pretrain(args.world, args.out, cfg.model, cfg.pretrain, overwrite=args.overwrite)
        return f"pretrained {stats['params'] / 1e6:.2f}M params on {stats['tokens']} tokens -> {args.out}"
    if args.cmd == "sample":
        from critiquelab.sample import run_sample

        cfg = _config(args)
        c = cfg.sample
        s = run_sample(args.problems, args.out, c, args.model or c.model, vllm=cfg.vllm, overwrite=args.overwrite)
        done = " (already complete)" if s["already_done"] else ""
        ungraded = s["solutions"] - s["graded"]
        graded = "not graded: their problems have no answer" if not s["graded"] else \
            f"share correct: {s['share_correct']:.1%}" + (f" of the {s['graded']} graded; {ungraded} not graded: "
                                                         "their problems have no answer" if ungraded else "")
        return f"wrote {s['solutions']} solutions to {args.out}{done} ({graded}){fit_note(s)}"
    if args.cmd == "rl":
        from critiquelab.rl import run_rl

        cfg = _config(args, **{"rl.model": args.model, "rl.solutions": args.solutions, "rl.output_dir": args.out}).rl
        if args.dry_run:
            from critiquelab.rl import plan_rl

            print(json.dumps(plan_rl(cfg), indent=2))
            return "dry run: nothing trained"
        st = run_rl(cfg, overwrite=args.overwrite)
        last = st["curve"][-1] if st["curve"] else {}
        return (f"rl: {st['steps']} steps into {cfg.output_dir} (pool: {st['pool']['critique_rows']} critique + "
                f"{st['pool']['solve_rows']} solve prompts); last reward {last.get('reward')}, verdicts right "
                f"{last.get('verdict_right_share')}, no verdict {last.get('no_verdict_share')}; "
                f"{st['compute']['total_tokens']} tokens generated + trained")
    if args.cmd == "seeds":
        from dataclasses import replace

        from critiquelab.sample import run_seeds

        cfg = _config(args)
        c = replace(cfg.sample, source="model", n_per_problem=args.k)
        res = run_seeds(args.problems, args.out, c, args.model, vllm=cfg.vllm, overwrite=args.overwrite)
        rate = {r["problem_id"]: r["pass_rate"] for r in res["ranked"]}
        picks = ", ".join(f"{n} {p} ({rate[p]:.0%})" for n, p in res["picks"].items())
        return f"{res['problems']} problems ranked by pass rate over {args.k} samples in {args.out}/seeds.json; {picks}"
    if args.cmd == "critique":
        from critiquelab.critique import run_critique

        cfg = _config(args)
        s = run_critique(args.input, args.out, cfg.critique, shard=args.shard, dry_run=args.dry_run, vllm=cfg.vllm,
                         overwrite=args.overwrite)
        if s.get("dry_run"):
            from critiquelab.critique import describe_estimate

            return f"dry run (nothing sent): {describe_estimate(s)}"
        return _critique_line(args.out, s)
    if args.cmd == "build":
        from critiquelab.build import run_build

        if args.from_alpaca:
            from critiquelab.export import import_alpaca_cft
            from critiquelab.io import output_dir

            with output_dir(args.out, "dataset", overwrite=args.overwrite) as (out, _):
                n = import_alpaca_cft(args.from_alpaca, out / "cft.jsonl")
            return f"imported {n} CFT examples to {args.out}/cft.jsonl"
        if not (args.solutions and args.critiques):
            raise UserError("build needs --solutions and --critiques (or --from-alpaca FILE)")
        res = run_build(args.solutions, args.critiques, args.out, _config(args).build,
                        teacher_solutions=args.teacher_solutions, overwrite=args.overwrite,
                        pick_methods=not _given(args, "build.methods"))
        return _build_line(args.out, res)
    if args.cmd == "train":
        from critiquelab.train import plan, run_train

        cfg = _config(args, **{"train.model": args.model, "train.data": args.data, "train.output_dir": args.out}).train
        if args.dry_run:
            p = plan(cfg, examples=args.examples)
            print(json.dumps(p, indent=2))
            missing = f"; MISSING: {' | '.join(p['missing'])}" if p["missing"] else ""
            return (f"dry run: world size {p['world_size']}, global batch {p['global_batch']}, "
                    f"{p['planned_steps']} steps, {p['examples']} examples, {p['planned_tokens']} tokens{missing}")
        s = run_train(cfg, world_dir=args.world, bench_dir=args.benchmarks_dir, overwrite=args.overwrite,
                      out_label="--out" if args.out else "train.output_dir")
        if not s:
            return "done (worker process)"
        return (f"trained {s['steps']} steps on {s['tokens']} tokens (loss {s['final_loss']:.3f}, "
                f"{s['tokens_per_s']} tokens/s) -> {cfg.output_dir}")
    if args.cmd == "eval":
        from critiquelab.evaluate import run_eval

        run_cfg = _config(args, **{"eval.benchmarks": args.benchmarks, "eval.limit": args.limit})
        s = run_eval(args.model, args.out, run_cfg.eval, world_dir=args.world, bench_dir=args.benchmarks_dir,
                     vllm=run_cfg.vllm, overwrite=args.overwrite)
        accs = ", ".join(f"{b} {100 * r['accuracy']:.1f}% (n={r['n']})" for b, r in s["benchmarks"].items())
        return f"{accs}{fit_note(s)}; details in {args.out}"
    if args.cmd == "judge":
        from critiquelab.critic import judge

        cfg = _config(args)
        js = judge(args.critic, args.solutions, args.out, cfg.critic, vllm=cfg.vllm, overwrite=args.overwrite)
        counts = {v: sum(j["verdict"] == v for j in js) for v in ("right", "wrong", None)}
        return f"judged {len(js)} solutions: {counts['right']} right, {counts['wrong']} wrong, {counts[None]} no verdict"
    if args.cmd == "eval-critic":
        from critiquelab.critic import run_eval_critic

        cfg = _config(args)
        res = run_eval_critic(args.critic, args.solutions, args.out, cfg.critic, vllm=cfg.vllm, overwrite=args.overwrite)
        m = res["metrics"]
        left_out = f"; {m['unlabelled']} solutions without a 'correct' label left out" if m["unlabelled"] else ""
        flag = f"; WARNING: {m['imbalance']}" if m.get("imbalance") else ""
        return (f"verdict accuracy {100 * m['accuracy']:.1f}%, balanced {100 * m['balanced_accuracy']:.1f}% "
                f"(CI {100 * m['balanced_accuracy_ci95'][0]:.1f}-{100 * m['balanced_accuracy_ci95'][1]:.1f}), "
                f"unparseable {100 * m['unparseable_rate']:.1f}% (n={m['n']}{left_out}){flag}{fit_note(res.get('generation', {}))}; "
                f"details in {args.out}")
    if args.cmd == "grade":
        from critiquelab.grading import grade
        from critiquelab.io import check_rows, read_jsonl

        rows = read_jsonl(args.responses, what="responses to grade")
        check_rows(rows, args.responses, {"response": str, "reference": (str, int, float)})
        grades = [grade(r["response"], str(r["reference"])) for r in rows]
        for g in grades:
            print(f"{g.correct}\t{g.reason}\t{g.extracted}")
        return f"{sum(g.correct for g in grades)}/{len(grades)} correct"
    if args.cmd == "report":
        from critiquelab.report import check_publish, publish, write_report

        if args.publish:
            check_publish(args.run_dir, args.publish, overwrite=args.overwrite)
        path = write_report(args.run_dir)
        if args.publish:
            return f"report: {path}; published to {publish(args.run_dir, args.publish, overwrite=args.overwrite)}"
        return f"report: {path}"
    if args.cmd == "cell":
        from critiquelab.cell import run_cell

        res = run_cell(Path(args.spec))
        if res["status"] == "failed":
            return f"cell {Path(args.spec).stem} FAILED: {res['error']}", EXIT_FAILED
        return f"cell {Path(args.spec).stem}: {res['status']}"
    if args.cmd in ("experiment", "demo"):
        from critiquelab.experiment import plan_experiment, preset_config, run_experiment

        if args.cmd == "experiment" and not args.config:
            raise UserError("experiment needs --config EXP.yaml (see recipes/demo-full.yaml)")
        cfg = _config(args) if args.config else preset_config(args.preset, args.overrides)
        if getattr(args, "dry_run", False):
            plan = plan_experiment(cfg, args.benchmarks_dir, offline=True)
            for c in plan.cells:
                print(f"{c.name}\tmodel={c.model} method={c.method} seed={c.seed} source={c.source} teacher={c.teacher} "
                      f"data_size={'all' if c.data_size is None else c.data_size}")
            _print_job_plan(cfg, plan, args.benchmarks_dir)
            return f"{len(plan.cells)} cells ({len(plan.models)} model(s), {len(plan.sources)} source(s), " \
                   f"{len(plan.teachers)} teacher(s), " \
                   f"{len(plan.sizes)} data size(s), {len(cfg.seeds)} seed(s)); nothing run"
        only = [m for m in (args.models or "").split(",") if m] or None
        res = run_experiment(cfg, args.out, bench_dir=args.benchmarks_dir, only_models=only)
        if res["pending"]:
            return (f"{len(res['pending'])} cell(s) queued or running on Slurm ({args.out}/jobs/*.slurm.json); "
                    "rerun the same command to collect them and write the report")
        report = Path(res["report"])
        summary = f"report: {report} (and {report.with_suffix('.html')}, {report.with_suffix('.json')})"
        if res["failed"]:
            return (f"{summary}; {len(res['failed'])} cell(s) FAILED: {', '.join(res['failed'])} "
                    f"(errors in {report.parent / 'cells.json'}; rerun to retry them)", EXIT_FAILED)
        return summary
    raise AssertionError(args.cmd)


def _print_job_plan(cfg, plan, bench_dir) -> None:
    """The dry run's job plan: executor, GPUs, GPU-hours and API cost, each with its source."""
    from critiquelab.costs import estimate
    from critiquelab.grid import needs_world

    est = estimate(cfg, plan, plan.questions, bench_dir)
    ex = cfg.experiment
    where = {"local": "in this process", "subprocess": f"{ex.parallel_cells} child process(es) at once",
             "slurm": f"Slurm jobs (partition {ex.slurm.partition or 'default'}, {ex.slurm.nodes} node(s) x "
                      f"{ex.slurm.gpus_per_node} GPU(s), {ex.slurm.time_min} min)"}[ex.executor]
    print(f"\njob plan: {est['trained_cells']} fine-tunes + {len(plan.models)} base evaluations, executor "
          f"{ex.executor} ({where}); {est['gpus_per_cell']} GPU(s) per cell; world: "
          f"{'generated' if needs_world(cfg, plan) else 'none (no source, base or benchmark uses it)'}")
    for src, q in est["questions"].items():
        print(f"  source {src}: {q['n']} training questions ({q['from']})")
    print(f"  evaluation: {est['benchmark_items']} items per model ({', '.join(cfg.eval.benchmarks)}; "
          f"{cfg.eval.max_new_tokens} new tokens at most)" + "".join(f"; {n}" for n in est["benchmark_notes"]))
    print("  model\tmethod\truns\tparams\ttrain tokens/run\ttrain GPU-h/run\tselection GPU-h/run\teval GPU-h/run\t"
          "GPU-h")
    for r in est["rows"]:
        params = f"{r['params'] / 1e9:.2f}B ({r['params_from']})" if r["params"] else "unknown"
        print(f"  {r['model']}\t{r['method']}\t{r['runs']}\t{params}\t{r['train_tokens_per_run']:,}\t"
              f"{r['train_gpu_hours_per_run']}\t{r['select_gpu_hours_per_run']}\t{r['eval_gpu_hours_per_run']}\t"
              f"{r['gpu_hours']}")
    print(f"  estimated GPU-hours in all: {est['gpu_hours']:,} (H100-equivalent; assumptions below)")
    for a in est["api"]:
        cost = f"${a['cost_usd']:,}" if a["cost_usd"] is not None else "cost unknown (set critique.price_*_per_mtok)"
        print(f"  teacher {a['teacher']} ({a['model']}) on source {a['source']}: {a['requests']:,} requests, "
              f"~{a['prompt_tokens']:,} prompt + ~{a['completion_tokens']:,} completion tokens, {cost} at "
              f"${a['price_per_mtok'][0]}/${a['price_per_mtok'][1]} per 1M tokens"
              + (f" x {a['batch_price_factor']} (Batch API)" if a["batch_price_factor"] else "")
              + f" (price source: {a['price_source']})")
    if est["api"]:
        print(f"  estimated API cost in all: ${est['api_cost_usd']:,}")
    print("  assumptions: " + "; ".join(f"{k}={v}" for k, v in est["assumptions"].items()))
    for m in plan.missing:
        print(f"  MISSING: {m}")


def _build_line(out: str, res: dict) -> str:
    """`build`'s summary in words: the sets, the methods left out, and what each filter did."""
    sets = ", ".join(f"{m} {n}" for m, n in res["counts"].items())
    skipped = "".join(f"; {m} not built: it needs {why} (ask for it with build.methods)"
                      for m, why in res.get("skipped_methods", {}).items())
    removed = res.get("decontaminate_removed")
    contamination = "decontamination off" if removed is None else \
        f"{sum(removed.values())} decontaminated" + (f" ({', '.join(f'{b} {n}' for b, n in removed.items())})"
                                                     if removed else "")
    duplicates = "dedupe off" if res.get("dedupe_removed") is None else f"{res['dedupe_removed']} duplicates removed"
    v = res["verdict_disagreements"]
    action = {"keep": "kept", "drop": "dropped", "flag": "kept, flagged"}[v["policy"]]
    unchecked = f", {v['unlabelled']} kept unchecked (no reference grade)" if v.get("unlabelled") else ""
    return (f"wrote datasets to {out}: {sets}{skipped}; filters: {duplicates}, {contamination}, "
            f"{v['count']} verdicts disagree with the reference grade ({action}){unchecked}, "
            f"{res['no_critique_or_verdict']} solutions without a critique or verdict")


def _critique_line(out: str, s: dict) -> str:
    cost = f"${s['cost_usd']}" if s["cost_usd"] is not None else "cost unknown (set critique.price_in_per_mtok " \
                                                                 "and critique.price_out_per_mtok)"
    lost = f", {s['lost_requests']} answers lost in transit (estimated in ledger.json)" if s.get("lost_requests") else ""
    return (f"critiques in {out}/critiques.jsonl: {s['ok']}/{s['items']} ok ({s['right']} right, {s['wrong']} wrong, "
            f"{s['no_verdict']} without verdict), {s['failed']} failed; tokens {s['prompt_tokens']}+"
            f"{s['completion_tokens']}, {cost}{lost}")


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
        summary = _run(args)
    except UserError as e:
        print(f"critiquelab {args.cmd}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USER
    except Incomplete as e:
        if args.cmd == "critique" and e.summary:
            print(_critique_line(args.out, e.summary), file=sys.stderr)
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
