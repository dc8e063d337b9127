"""Builds tests/data/grading_labelled.jsonl: real-looking model responses over the math benchmarks
and GPQA, each labelled by hand (right / wrong / no_answer) with the kind of reading it tests.

Three sources, every label decided by reading the response (never by running a grader):
- `prmbench`: solutions from PRMBench (its PRM800K-style originals, and modified ones with an
  inserted error), over MATH-500 problems (their reference from math-500/test.jsonl); the step
  lists are joined with newlines, and the literal "\\n" in PRM800K's "# Answer\\n\\n2" turned into
  real newlines. Labels: PRM_LABELS below, one line per row.
- `handwritten`: variants of each kind of misreading of issue 34, written here against real
  items (their reference and options come from the benchmark files).
- `smollm2`: SmolLM2-135M-Instruct's own greedy answers (scripts/smollm2_answers.py, kept in
  tests/data/smollm2_responses.jsonl), labelled in SMOL_LABELS.

Kinds: tiny_numbers, factor, subscript, swapped_equation, plus_minus, dms_angle, percent (math
notations), fallback (no final-answer marker: the concluding sentence, or none), marker (a final
answer marker), choice_closing (a letter in the closing sentence), option_text (an option's text
instead of its letter), change_of_mind (the last answer counts), choice (other choice answers).

    .venv/bin/python scripts/grading_set.py   # rewrites tests/data/grading_labelled.jsonl
"""

from __future__ import annotations

import glob
import json
import random
from pathlib import Path

from critiquelab.sources import benchmarks_dir, load_benchmark

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "grading_labelled.jsonl"
SMOL = ROOT / "tests" / "data" / "smollm2_responses.jsonl"

# (kind, item id, label, response, note)
HAND = [
    # 1. tiny numbers: 1e-6 of the reference at every magnitude
    ("tiny_numbers", "minerva_math-191", "wrong", "For BCC molybdenum the lattice constant is a = 3.15 \\AA, and the atoms touch "
     "along the body diagonal, so 4r = \\sqrt{3} a.\n\nr = \\sqrt{3}(3.15)/4 = 1.36 \\AA.\n\n$\\boxed{1.36 \\times 10^{-10}}$ m",
     "1.36e-10 against 1.39e-10"),
    ("tiny_numbers", "minerva_math-191", "right", "With a = 3.147 \\AA and 4r = \\sqrt{3}a, r = 1.39 \\AA, i.e.\n\\[\\boxed{1.39 "
     "\\times 10^{-10}\\text{ m}}\\]", ""),
    ("tiny_numbers", "minerva_math-191", "wrong", "The metallic radius is about an angstrom: \\boxed{9.99 \\times 10^{-10}}", ""),
    ("tiny_numbers", "minerva_math-174", "wrong", "\\lambda = h/p = 6.626\\times10^{-34}/(1.705\\times10^{-24}) m, so \\boxed{3.88 "
     "\\times 10^{-10}}", "a different second decimal"),
    ("tiny_numbers", "minerva_math-174", "right", "Therefore the wavelength is $\\boxed{3.89e-10}$ m.", ""),
    ("tiny_numbers", "minerva_math-179", "right", "\\lambda = \\frac{h}{\\sqrt{2 m e V}} = \\frac{6.63\\times 10^{-34}}{\\sqrt{2(1.67"
     "\\times10^{-27})(1.6\\times10^{-19})(15)}} \\approx 7.4 \\times 10^{-12} m.\n\nThe answer is $\\boxed{7.4\\times 10^{-12}}$.", ""),
    ("tiny_numbers", "minerva_math-179", "wrong", "Using the electron mass by mistake... \\boxed{7.4 \\times 10^{-11}}", "off by 10"),
    ("tiny_numbers", "minerva_math-184", "right", "The second nearest neighbours in FCC copper are one lattice constant apart: "
     "a = 3.61 \\AA = \\boxed{3.61 \\times 10^{-10}} m.", ""),
    ("tiny_numbers", "minerva_math-184", "wrong", "Nearest neighbours sit at a/\\sqrt{2} = 2.55 \\AA, so \\boxed{2.55\\times10^{-10}}",
     "the first, not the second, neighbours"),
    ("tiny_numbers", "minerva_math-178", "right", "\\lambda = c/\\nu = (3\\times10^8)/(5.09\\times10^{14}) = \\boxed{5.89 \\times "
     "10^{-7}} m", ""),
    ("tiny_numbers", "minerva_math-178", "right", "The wavelength is 589 nm, that is \\boxed{589 \\times 10^{-9}} m.", "the same number"),
    ("tiny_numbers", "minerva_math-178", "wrong", "So \\lambda = \\boxed{5.89\\times10^{-9}} m.", ""),
    ("tiny_numbers", "theoremqa-352", "right", "\\lambda = h/(mv) = 6.626e-34/(0.057 \\cdot 25) = 4.65e-34 m, which rounds to "
     "\\boxed{4.7 \\times 10^{-34}}.", ""),
    ("tiny_numbers", "theoremqa-352", "wrong", "\\lambda = h/(mv) \\approx \\boxed{4.6\\times10^{-34}} m", ""),
    ("tiny_numbers", "theoremqa-80", "right", "\\Delta p \\geq \\hbar/(2\\Delta x) \\approx \\boxed{3 \\times 10^{-36}} kg m/s", ""),
    ("tiny_numbers", "theoremqa-80", "wrong", "\\Delta p \\approx \\boxed{3\\times 10^{-34}} kg m/s", ""),
    ("tiny_numbers", "theoremqa-659", "right", "By Gauss's law q = \\epsilon_0 \\Phi = (8.85\\times10^{-12})(4.0\\times10^4) "
     "= 3.54\\times10^{-7} C.\nThe answer is $3.54 \\times 10^{-7}$.", ""),
    ("tiny_numbers", "theoremqa-659", "wrong", "q = \\epsilon_0\\Phi, so q = \\boxed{3.54 \\times 10^{-9}} C.", ""),
    ("tiny_numbers", "minerva_math-44", "right", "The angular resolution is \\lambda/D = 1 cm / 1 km = \\boxed{10^{-5}} radians.", ""),
    ("tiny_numbers", "minerva_math-156", "wrong", "The wavelength is \\boxed{1.8 \\times 10^{-6}} m.", "2 figures where 3 are given"),
    # 2. a factor after a fraction or a root
    ("factor", "olympiadbench-2565", "right", "Following the same pattern, $q = \\frac{ab}{2}$ works, so the answer is "
     "$\\boxed{\\frac{1}{2}ab}$.", ""),
    ("factor", "olympiadbench-2565", "right", "Hence q is half the product: \\boxed{\\frac{1}{2}\\cdot a b}", ""),
    ("factor", "olympiadbench-2565", "right", "So $q=\\sqrt{\\frac{1}{4}}ab$, i.e. \\boxed{\\sqrt{\\frac{1}{4}}ab}", ""),
    ("factor", "olympiadbench-2565", "right", "\\boxed{\\frac{1}{\\sqrt{4}}ab}", ""),
    ("factor", "olympiadbench-2565", "wrong", "\\boxed{\\frac{1}{2}b}", "a factor missing"),
    ("factor", "olympiadbench-2565", "wrong", "\\boxed{\\frac{1}{\\sqrt{4}}a}", ""),
    ("factor", "olympiadbench-1695", "right", "The last ant falls off after \\boxed{\\frac{3}{2}m-1} time units.", ""),
    ("factor", "olympiadbench-1695", "wrong", "The latest moment is \\boxed{\\frac{3}{2}s-1}.", "another symbol"),
    ("factor", "olympiadbench-2995", "right", "Each switch must be flipped, so at least \\boxed{\\frac{1}{2}n} minutes.", ""),
    ("factor", "olympiadbench-2995", "wrong", "\\boxed{\\frac{1}{2}}", ""),
    ("factor", "minerva_math-94", "right", "The particular solution is \\boxed{\\frac{1}{4}t\\sin(2t)}.", ""),
    ("factor", "minerva_math-94", "wrong", "The particular solution is \\boxed{\\frac{1}{4}\\sin(2t)}.", "the factor t missing"),
    # 3. notations: subscripted capitals, swapped sides, \pm, degrees-minutes-seconds, percent
    ("subscript", "minerva_math-269", "right", "A single measurement returns an eigen-energy: either \\boxed{E_1, E_2}", ""),
    ("subscript", "minerva_math-269", "right", "The possible results are \\boxed{E_{2},E_{1}}", "the same set"),
    ("subscript", "minerva_math-269", "wrong", "\\boxed{E_1}", "one of the two"),
    ("subscript", "minerva_math-268", "right", "\\langle E\\rangle = \\boxed{\\frac{E_1+2E_2}{3}}", ""),
    ("subscript", "minerva_math-268", "right", "\\boxed{\\frac{2}{3}E_2+\\frac{1}{3}E_1}", ""),
    ("subscript", "minerva_math-268", "wrong", "\\boxed{\\frac{2E_1+E_2}{3}}", "the weights swapped"),
    ("subscript", "minerva_math-268", "wrong", "\\boxed{\\frac{1}{3} E_{2}+\\frac{2}{3} E_{1}}", ""),
    ("subscript", "minerva_math-101", "right", "y = \\boxed{C_1\\sin(2t)+C_2\\cos(2t)-\\frac{\\sin(3t)}{5}}", ""),
    ("swapped_equation", "minerva_math-245", "right", "Profit is maximised where \\boxed{SRMC=MR}", ""),
    ("swapped_equation", "minerva_math-260", "right", "The demand curve is \\boxed{125-1.25P=X_d}", ""),
    ("swapped_equation", "minerva_math-260", "right", "\\boxed{X_d = 125 - \\frac{5}{4}P}", ""),
    ("swapped_equation", "minerva_math-260", "wrong", "\\boxed{X_d=125-1.5P}", ""),
    ("swapped_equation", "olympiadbench-1723", "right", "\\boxed{2^{N-2}+1=M}", ""),
    ("swapped_equation", "minerva_math-268", "right", "Writing it as an equation: \\boxed{\\langle E \\rangle = \\frac{1}{3}E_1 + "
     "\\frac{2}{3}E_2}", "an equation against the expression"),
    ("plus_minus", "test/intermediate_algebra/662.json", "right", "\\boxed{1+\\sqrt{19}, 1-\\sqrt{19}}", ""),
    ("plus_minus", "test/intermediate_algebra/662.json", "right", "By the quadratic formula, \\boxed{\\frac{2\\pm\\sqrt{76}}{2}}", ""),
    ("plus_minus", "test/intermediate_algebra/662.json", "wrong", "\\boxed{1+\\sqrt{19}}", "one root"),
    ("plus_minus", "test/precalculus/768.json", "right", "\\boxed{\\frac{6 \\pm 4\\sqrt{2}}{2}}", ""),
    ("plus_minus", "test/precalculus/768.json", "right", "\\boxed{\\frac{6\\pm\\sqrt{32}}{2}}", ""),
    ("plus_minus", "test/precalculus/768.json", "right", "\\boxed{3+2\\sqrt2,3-2\\sqrt2}", ""),
    ("plus_minus", "test/precalculus/768.json", "wrong", "\\boxed{\\frac{6 \\pm 2\\sqrt{2}}{2}}", ""),
    ("plus_minus", "test/intermediate_algebra/2015.json", "right", "\\boxed{-2, 1+\\sqrt5, 1-\\sqrt5}", ""),
    ("dms_angle", "minerva_math-2", "right", "sin(critical) = 1/1.5, so the critical angle is \\boxed{41^\\circ 48'}", "41.8 degrees"),
    ("dms_angle", "minerva_math-2", "wrong", "\\boxed{41^\\circ 8'}", ""),
    ("dms_angle", "minerva_math-195", "right", "\\theta = \\boxed{28^\\circ 42.6'}", ""),
    ("dms_angle", "olympiadbench-2435", "right", "x = \\arcsin(\\cos 15^\\circ / 3) = \\boxed{18^\\circ 48'}", ""),
    ("dms_angle", "olympiadbench-2435", "wrong", "\\boxed{18^\\circ 8'}", ""),
    ("dms_angle", "theoremqa-146", "right", "The angle of refraction is \\boxed{7^{\\circ} 6'}", ""),
    ("dms_angle", "theoremqa-99", "right", "\\boxed{25^\\circ 0' 0''}", ""),
    ("percent", "olympiadbench-2255", "right", "P = 0.125/0.2 = \\boxed{0.625}", "the reference carries its percent sign"),
    ("percent", "olympiadbench-2255", "right", "\\boxed{62.5}", ""),
    ("percent", "olympiadbench-2255", "wrong", "\\boxed{0.0625}", ""),
    ("percent", "olympiadbench-2276", "right", "\\boxed{0.08}", ""),
    ("percent", "olympiadbench-2341", "right", "The mixture is \\boxed{0.175} acid.", ""),
    ("percent", "theoremqa-92", "wrong", "The fraction of the original intensity is \\boxed{0.548}",
     "the question asks for a percentage; a bare 0.548 is read as written"),
    ("percent", "theoremqa-92", "right", "\\boxed{54.8\\%}", ""),
    ("percent", "theoremqa-88", "right", "(1 + 0.18/4)^4 - 1 = \\boxed{19.25\\%}", ""),
    # 4. the fallback: a concluding sentence, or nothing
    ("fallback", "test/precalculus/285.json", "no_answer", "The roots of z^4 + z^2 + 1 are the primitive 6th and 3rd roots of "
     "unity, up to sign. Any n that works must contain every order that occurs.\nTherefore, the number must be a multiple "
     "of 6.", "no value is concluded"),
    ("fallback", "test/geometry/178.json", "wrong", "From \\sin A = 2\\cos A we get \\sin^2 A = 4(1-\\sin^2 A), so \\sin A = "
     "2/\\sqrt{5} and \\cos A = 1/\\sqrt{5}. So the ratio is $1/\\sqrt{2}$.", "1/sqrt(2), not 2"),
    ("fallback", "test/number_theory/627.json", "wrong", "n + 2 = 4, n + 4 = 6 and n + 6 = 8 = 1 (mod 7), and the product "
     "reduces to 24. Solving the congruence the other way round I get x = -7/3.", "-7/3, not 3"),
    ("fallback", "gsm8k-370", "right", "Ethan saves 20% of $400, which is $80. So his wallpaper costs $400 - $80 = $320. That "
     "is less than the market price of $400.", "the last number is the question's 400"),
    ("fallback", "gsm8k-370", "right", "20% of 400 is 80, so the DIY wallpaper costs 400 - 80 = 320 dollars.\nThe wallpaper "
     "at the market costs $400.", "a given restated after the conclusion"),
    ("fallback", "gsm8k-733", "no_answer", "Greg and his 3 siblings share the money.\n1. Greg has $20.\n2. There are 4 "
     "people.\n3. Each person gets an equal share.\n4. Split the money:\n5. Ines", "cut off at a list number"),
    ("fallback", "gsm8k-733", "right", "There are 4 people in total, so each of them gets 20 / 4 = $5. Greg found $20 and "
     "split it with his 3 younger siblings.", "the question's numbers restated last"),
    ("fallback", "gsm8k-733", "right", "Greg plus 3 siblings makes 4 people. 20 divided by 4 is 5, so each of them gets $5. "
     "I hope this helps!", "a closing remark"),
    ("fallback", "gsm8k-272", "right", "The total is 4.20 + 9.45 + 1.35 = 15.00 dollars. She pays 20, so the change is "
     "20 - 15 = 5 dollars.", ""),
    ("fallback", "gsm8k-272", "no_answer", "First add the prices: 4.20 + 9.45 + 1.35 = 15.00. Then the change is the amount "
     "she pays minus", "cut off"),
    ("fallback", "gsm8k-308", "right", "Each tub saves $13 - $11 = $2, so 2 tubs save $4. Each packet saves $0.5, so 4 packets "
     "save $2. In total you save $6.", ""),
    ("fallback", "gsm8k-308", "wrong", "2 tubs cost 2 x 11 = 22 dollars and 4 packets of milk cost 4 x 0.5 = 2 dollars, so "
     "everything costs 24 dollars.", "a total price, not the saving"),
    ("fallback", "gsm8k-888", "right", "After eating 5 cookies she has 55 - 5 = 50 left. Dividing them into five jars gives "
     "50 / 5 = 10 cookies per jar.", ""),
    ("fallback", "gsm8k-888", "no_answer", "Lani baked 55 cookies and ate 5 of them. We need to find how many cookies were "
     "in each of the five jars?", "only the question, asked again"),
    ("fallback", "gsm8k-1128", "right", "Two years ago Liam was 16 - 2 = 14, so Vince was 14 / 2 = 7 then.\nVince is now "
     "7 + 2 = 9 years old.", ""),
    ("fallback", "gsm8k-1128", "wrong", "Two years ago Liam was 14, so Vince was 7.", "the age two years ago"),
    ("fallback", "gsm8k-185", "right", "Her mom picked 20 apples and Jenna picked half as many, 10 apples. Together they "
     "picked 20 + 10 = 30 apples.", ""),
    ("fallback", "gsm8k-185", "no_answer", "Jenna picked half as many apples as her mom, who got 20 apples. So Jenna got 20 / 2 "
     "apples and together they picked 20 plus that many", "cut off"),
    ("fallback", "gsm8k-1308", "right", "The second basket has 2 * 10 = 20 eggs, so both baskets hold 10 + 20 = 30 eggs.", ""),
    ("fallback", "gsm8k-1308", "wrong", "The second basket has twice as many eggs, 20 eggs.", "one basket"),
    ("fallback", "gsm8k-492", "right", "The family-size pizza costs 3 * 8 = 24 dollars, so Sally spends 8 + 24 = 32 dollars "
     "in all.", ""),
    ("fallback", "gsm8k-492", "right", "Step 1: 3 * 8 = 24\nStep 2: 8 + 24 = 32", "the last step's result, no final line"),
    ("fallback", "gsm8k-492", "no_answer", "Step 1: 3 * 8 = 24\nStep 2:", "cut off after the first step"),
    ("fallback", "test/algebra/187.json", "right", "Dividing a degree-4 polynomial by x - 1 lowers the degree by one, so f "
     "has degree 3.", ""),
    ("fallback", "test/prealgebra/192.json", "right", "72 = 8 \\cdot 9 = 2^3 \\cdot 3^2, so x = 2.", ""),
    ("fallback", "test/prealgebra/192.json", "no_answer", "We know 2^3 = 8, and 72 / 8 = 9. So we need 3^x to be 9, which "
     "happens for some small value of x.", "the value is never given"),
    ("fallback", "test/prealgebra/930.json", "right", "The hexagon's perimeter is 6 * 16 = 96 cm, so each side of the "
     "octagon is 96 / 8 = 12 cm.", ""),
    ("fallback", "test/prealgebra/930.json", "no_answer", "The perimeter of the hexagon is 6 times 16 cm. The octagon has 8 "
     "sides with the same perimeter of 96 cm in total, and the hexagon shown has side length 16 cm.",
     "the givens restated; the side length is never computed"),
    # 5. multiple choice: the closing sentence's letter
    ("choice_closing", "gpqa_diamond-rec527dNeEtWJrYNl-p0", "right", "PFA+DSG fixes protein-protein contacts, and the peaks "
     "that vanish are the weak, artefactual ones at highly open chromatin. Therefore, the correct location is (C).", ""),
    ("choice_closing", "gpqa_diamond-rec06pnAkLOr2t2mp-p0", "right", "The linewidths are about hbar/tau, 6.6e-7 eV and 6.6e-8 "
     "eV; to resolve the two levels the difference must be larger, so the energy difference is (A) 10^-4 eV.", ""),
    ("choice_closing", "gpqa_diamond-recDDxpS9s8cwkqfq-p0", "right", "2.3393 eV is about 530 nm. The dye absorbs the "
     "complementary part of the spectrum.\n\nThe color absorbed is (C) Red.", ""),
    ("choice_closing", "gpqa_diamond-recNAiPUKOulQbKVP-p0", "right", "Classical electrodynamics already has the divergent "
     "self-energy of a point charge, and QCD and QED need renormalization. The theory that never needs it is **Superstring "
     "Theory (C)**.", ""),
    ("choice_closing", "gpqa_diamond-rec9ubQihAh6g9bft-p0", "wrong", "Thermodynamically oxygen is a weaker oxidant in basic "
     "solution, and kinetically it reacts faster in acid. Therefore, the correct combination is (A).", ""),
    ("choice_closing", "gpqa_diamond-recDj2Y2BbtV02Wv5-p0", "wrong", "Product 3 is a planar conjugated enone. Its point "
     "group is (C) d2h.", ""),
    ("choice_closing", "gpqa_diamond-recL9MFV5zmdlle5T-p0", "right", "An ester, a vinyl group and the ring give 6 degrees of "
     "unsaturation, so the formula is **C11H12O2 (B)**.", ""),
    ("choice_closing", "gpqa_diamond-recI1ls9OXdxatHQn-p0", "right", "Normalising, the particle is found between x=1 and "
     "x=3 with a = 0.85, so the value of a would be (B) 0.85.", ""),
    ("choice_closing", "gpqa_diamond-recNFJjE5PPTqVJGv-p0", "wrong", "The excess HCl dominates: [H+] = 0.0417 M. Hence the "
     "pH is (D) 1.38.", ""),
    ("choice_closing", "gpqa_diamond-rec0Arme2jcXQZnAW-p0", "right", "The Grignard adds one carbon and the Corey-Chaykovsky "
     "step adds another, so product 3 has 11 carbon atoms, which is (D).", ""),
    ("choice_closing", "gpqa_diamond-rec5rjeLsEq5Fg7Oj-p0", "right", "Only the compounds with a stereocentre and no mirror "
     "plane count, so the number of optically active ones is (B) 3.", ""),
    ("choice_closing", "gpqa_diamond-recBtVK8rBVtIlXDq-p0", "right", "The signal recognition particle meets the chain at "
     "the ribosome and sends it on to be secreted: from the cytosol to the extracellular space, option (C).", ""),
    ("choice_closing", "gpqa_diamond-recIlghoOw5VbY4Zh-p0", "no_answer", "Metathesis of the racemic alkene gives several "
     "products. Option (A) is ruled out because ethene is not counted.", "the closing sentence rules an option out"),
    ("choice_closing", "gpqa_diamond-recKcjTwONILZqHAX-p0", "no_answer", "The coupling has negative mass dimension, so the "
     "answer is not (B).", "a negation"),
    ("choice_closing", "gpqa_diamond-recGFNRVl1qBZGwyU-p0", "no_answer", "After the alkylations E has a symmetric skeleton. "
     "So the number of signals is (B) or (D).", "two letters at once"),
    # 6. the option's text instead of its letter
    ("option_text", "gpqa_diamond-rec0wZvZgiz320KRs-p0", "right", "<10 sigma_z + 5 sigma_x> = 10(-0.5) + 5(0.87) = -0.67, "
     "so to one decimal place:\n\n\\boxed{-0.7}", ""),
    ("option_text", "gpqa_diamond-recI1ls9OXdxatHQn-p0", "right", "Normalising the wavefunction gives \\boxed{0.85}", ""),
    ("option_text", "gpqa_diamond-rec5rjeLsEq5Fg7Oj-p0", "right", "Three of the compounds are chiral: \\boxed{3}", ""),
    ("option_text", "gpqa_diamond-rec0Arme2jcXQZnAW-p0", "right", "Counting the carbons of product 3: \\boxed{11}", ""),
    ("option_text", "gpqa_diamond-recIlghoOw5VbY4Zh-p0", "wrong", "Counting the metathesis products: \\boxed{8}", ""),
    ("option_text", "gpqa_diamond-recDDxpS9s8cwkqfq-p0", "right", "\\boxed{\\text{Red}}", ""),
    ("option_text", "gpqa_diamond-recNAiPUKOulQbKVP-p0", "right", "\\boxed{\\text{Superstring Theory}}", ""),
    ("option_text", "gpqa_diamond-rec06pnAkLOr2t2mp-p0", "right", "The difference must exceed both linewidths: \\boxed{10^{-4}"
     "\\text{ eV}}", ""),
    ("option_text", "gpqa_diamond-rec7C06XOB2h298ue-p0", "right", "[Ca2+] = sqrt(0.02 / 5e10) = \\boxed{6.3 \\times 10^{-7}"
     "\\text{ M}}", ""),
    ("option_text", "gpqa_diamond-recNFJjE5PPTqVJGv-p0", "wrong", "\\boxed{8.68}", ""),
    ("option_text", "gpqa_diamond-recKcjTwONILZqHAX-p0", "no_answer", "\\boxed{4}", "no option is 4"),
    ("option_text", "gpqa_diamond-recNAiPUKOulQbKVP-p0", "right", "Only one of these is finite at all energies. The answer is "
     "Superstring Theory.", "after 'the answer is'"),
    # 7. a change of mind: the last answer counts
    ("change_of_mind", "gpqa_diamond-rec527dNeEtWJrYNl-p0", "right", "At first sight the peaks are random noise, so the "
     "answer is (A). Hmm, wait: PFA alone fixes DNA-protein contacts at open chromatin. Therefore, the answer is (C).", ""),
    ("change_of_mind", "gpqa_diamond-recNAiPUKOulQbKVP-p0", "right", "\\boxed{D}\n\nOn reflection QED needs renormalization "
     "too; the answer is (C).", ""),
    ("change_of_mind", "gpqa_diamond-rec0wZvZgiz320KRs-p0", "wrong", "The answer is (C).\nActually no: checking the sign of "
     "the sigma_z term again, the answer is (B).", ""),
    ("change_of_mind", "gpqa_diamond-rec7qmSnbud4FHSqL-p0", "right", "So the answer is (A). But I used the wrong "
     "temperatures; redoing the ratio, it is (D) ~12.6.", ""),
    ("change_of_mind", "gpqa_diamond-recDytVnNYZe2HuUU-p0", "wrong", "E = gamma m c^2 with gamma = 3.57, so \\boxed{D}. Let me "
     "redo it with the lithium mass: the answer is (A).", ""),
    ("change_of_mind", "gsm8k-1291", "right", "Timothy has 3 * 18 = 54 pens, so the answer is 54. Wait, the question asks about "
     "Sarah: she has 54 / 2 = 27 pens, so the answer is 27.", ""),
    ("change_of_mind", "gsm8k-126", "right", "\\boxed{44}\nThat is only the fish sausages; in all he bought 38 + 44 = 82, "
     "\\boxed{82}.", ""),
    ("change_of_mind", "gsm8k-1097", "wrong", "12 * 35 + 20 * 3 = 480 people, so the answer is 480.\nHmm, maybe the drivers "
     "count too, so the answer is 512.", ""),
    # other choice answers and math markers
    ("choice", "gpqa_diamond-recJJcOHhFeSaRpl4-p0", "right", "The IR bands and the quartet/triplet pair point to an ethyl "
     "ester of an aniline.\n\n\\boxed{D}", ""),
    ("choice", "gpqa_diamond-recLAgwx9vbgB5EHk-p0", "wrong", "Answer: A", ""),
    ("choice", "gpqa_diamond-recKv4hFyNpViUXnL-p0", "right", "**(B)**", ""),
    ("choice", "gpqa_diamond-recOkA2zsy4GSMD9R-p0", "no_answer", "The answer is a bit subtle: it depends on the salts.", ""),
    ("marker", "test/algebra/187.json", "right", "So the degree of f is 3.\n#### 3", ""),
    ("marker", "gsm8k-1140", "right", "Gomer ate 18 scoops, and 3 potatoes make 2 scoops, so 18 * 3 / 2 = 27.\nThe answer is "
     "27.", ""),
    ("marker", "gsm8k-858", "wrong", "Day 1: 10 + 60 = 70, day 2: 70 * 7 = 490, day 3: 490 * 6 = 2940.\nFinal answer: 2940",
     ""),
    ("marker", "gsm8k-95", "right", "There are 120 girls and 80 of them are scouts.\n# Answer\n\n40", ""),
]

# PRMBench rows (see `prmbench_rows`): label, kind, note
PRM_LABELS = """
prm-000 right marker
prm-001 right fallback the vector is stated before "That is our answer."; the last lines only check it
prm-002 right fallback
prm-003 right marker
prm-004 right marker
prm-005 right marker
prm-006 right marker
prm-007 right fallback
prm-008 right fallback "approaches 4/3": the asymptote y = 4/3
prm-009 right fallback "$4$ is the answer."
prm-010 right marker 5.5 = 11/2
prm-011 right fallback
prm-012 right marker 25*24 = 600
prm-013 right fallback an empty "# Answer" heading; the sentence before concludes 550 gallons
prm-014 right fallback
prm-015 right fallback
prm-016 right marker
prm-017 right marker
prm-018 right fallback
prm-019 right fallback "11 times the square root of 2", in words
prm-020 right marker
prm-021 right marker
prm-022 right fallback
prm-023 no_answer fallback the decimal is never written out: a long-division display, then a remark
prm-024 right fallback
prm-025 right fallback
prm-026 right marker
prm-027 right marker
prm-028 right marker
prm-029 right fallback
prm-030 right fallback
prm-031 right marker 273375/703125 = 243/625
prm-032 right fallback
prm-033 right fallback
prm-034 right marker
prm-035 right marker
prm-036 right fallback
prm-037 right marker
prm-038 right marker "# Answer 284" on one line
prm-039 right marker
prm-040 right fallback
prm-041 right marker
prm-042 right marker
prm-043 wrong fallback concludes 650*90 = 585000 (58,500 is right)
prm-044 right marker
prm-045 right fallback "(a_1)^9 = -1, and that is our final answer"
prm-046 right marker
prm-047 right marker
prm-048 right marker
prm-049 no_answer fallback an empty "# Answer" heading; 4.5 is never written
prm-050 right fallback "the interval [-2, 7]. This is my final answer."
prm-051 right fallback
prm-052 right marker
prm-053 right marker
prm-054 right fallback
prm-055 right fallback
prm-056 right fallback
prm-057 right fallback
prm-058 right fallback an empty "# Answer" heading; the sentence before: "theta = pi/6 radians or 30 degrees"
prm-059 right fallback "this is equal to 12. So we get the same answer."
prm-060 right fallback "the area decreased by 10%"
prm-061 right fallback
prm-062 right fallback an empty "# Answer" heading; the sentence before: "which is 10 meters"
prm-063 right fallback "an ellipse", in words
prm-064 right marker
prm-065 right marker
prm-066 no_answer fallback stops before computing AB + B
prm-067 right fallback
prm-068 right marker
prm-069 right marker
prm-070 right fallback
prm-071 right fallback "Since x=3 is the only solution in this interval, ..."
prm-072 right fallback
prm-073 right marker
prm-074 right marker
prm-075 right marker
prm-076 right marker
prm-077 right marker
prm-078 right marker the roots in another order
prm-079 right fallback
prm-080 right fallback
prm-081 right fallback "Which equals 225. That is our final answer."
prm-082 wrong fallback "this is the answer": an unsimplified expression, not 8/15
prm-083 right fallback
prm-084 right fallback
prm-085 right marker
prm-086 right marker
prm-087 right marker
prm-088 right fallback "the same as cot x", in words
prm-089 right marker
prm-090 right marker "# Answer: 28800"
prm-091 right fallback "555_10 = 4210_5" stated, then a check back to 555
prm-092 right fallback
prm-093 right marker
prm-094 right marker
prm-095 right marker
prm-096 right fallback an align display ending "= 898"
prm-097 right marker
prm-098 right marker
prm-099 right marker
prm-100 right fallback
prm-101 wrong fallback the inserted error: (-1, 5)
prm-102 wrong fallback the inserted error: 13
prm-103 no_answer fallback the sum h+k+a+b is never computed
prm-104 wrong fallback "one y-intercept" (the question asks how many: 2)
prm-105 right fallback "... leading to 63."
prm-106 wrong fallback "gives 18"
prm-107 right fallback "the graph has two y-intercepts" (in words; right although the steps are flawed)
prm-108 wrong marker
prm-109 right marker
prm-110 wrong fallback
prm-111 wrong fallback
prm-112 no_answer fallback "# Conclusion" and no value
prm-113 right fallback
prm-114 wrong fallback
prm-115 right fallback
prm-116 right fallback
prm-117 wrong marker 21/36 = 7/12
prm-118 no_answer fallback
prm-119 wrong fallback two hedged answers, the last sqrt(85)
prm-120 wrong fallback "five possible rational roots"
prm-121 right fallback
prm-122 right fallback
prm-123 wrong fallback "rounding would give $20"
prm-124 wrong marker
prm-125 wrong marker
prm-126 right fallback "eight values of t", in words
prm-127 right fallback
prm-128 wrong fallback
prm-129 no_answer fallback
prm-130 no_answer fallback
prm-131 right fallback 273375/703125 = 243/625
prm-132 no_answer fallback
prm-133 right marker
prm-134 no_answer fallback "cannot definitely determine the value of p"
prm-135 right marker
prm-136 wrong fallback 32 (64 is right)
prm-137 wrong marker
prm-138 right fallback
prm-139 right fallback
"""


def _items() -> dict[str, dict]:
    out = {}
    for name in ("math-500", "minerva_math", "gsm8k", "olympiadbench", "theoremqa", "gpqa_diamond"):
        for r in load_benchmark(name):
            out[r["id"]] = {**r, "benchmark": name}
    return out


def _row(rid: str, source: str, kind: str, item: dict, response: str, label: str, note: str) -> dict:
    return {"id": rid, "source": source, "kind": kind, "benchmark": item["benchmark"], "item": item["id"],
            "answer_type": item.get("answer_type", "math"), "question": item["question"], "reference": item["answer"],
            "letters": item.get("letters"), "options": item.get("options"), "response": response, "label": label,
            "note": note}


def prmbench_rows(items: dict[str, dict], labels: dict[str, tuple[str, str, str]]) -> list[dict]:
    """100 original solutions of distinct problems and 40 modified ones, in a seeded order."""
    folder = benchmarks_dir() / "prmbench"
    by_problem = {r["question"].strip(): r for r in items.values() if r["benchmark"] == "math-500"}
    rows = []
    for f in sorted(glob.glob(str(folder / "*.jsonl"))):
        rows += [json.loads(line) for line in open(f, encoding="utf-8")]
    orig, mod = {}, {}
    for r in rows:
        orig.setdefault("\n".join(r["original_process"]), r)
        mod.setdefault("\n".join(r["modified_process"]), r)
    rng = random.Random(34)
    oq, mq = list(orig.values()), list(mod.values())
    rng.shuffle(oq)
    rng.shuffle(mq)
    picked, seen = [], set()
    for r in oq:
        if r["question"].strip() not in seen:
            seen.add(r["question"].strip())
            picked.append((r, r["original_process"]))
        if len(picked) >= 100:
            break
    picked += [(r, r["modified_process"]) for r in mq[:40]]
    out = []
    for k, (r, steps) in enumerate(picked):
        rid = f"prm-{k:03d}"
        label, kind, note = labels[rid]
        text = "\n".join(s.replace("\\n", "\n") for s in steps)
        out.append(_row(rid, "prmbench", kind, by_problem[r["question"].strip()], text, label, note))
    return out


def _labels(block: str) -> dict[str, tuple[str, str, str]]:
    out = {}
    for line in block.strip().splitlines():
        rid, label, kind, *note = line.split(None, 3)
        out[rid] = (label, kind, note[0] if note else "")
    return out


def main() -> None:
    items = _items()
    rows = prmbench_rows(items, _labels(PRM_LABELS))
    for i, (kind, item, label, response, note) in enumerate(HAND):
        rows.append(_row(f"hand-{i:03d}", "handwritten", kind, items[item], response, label, note))
    if SMOL.exists():
        smol = _labels(SMOL_LABELS)
        for line in open(SMOL, encoding="utf-8"):
            r = json.loads(line)
            rid = f"smol-{r['id']}"
            label, kind, note = smol[rid]
            rows.append(_row(rid, "smollm2", kind, items[r["id"]], r["response"], label, note))
    assert all(r["label"] in ("right", "wrong", "no_answer") for r in rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows -> {OUT}")


SMOL_LABELS = """
smol-gsm8k-788 no_answer fallback cut off mid-expression ("1/2 * 30")
smol-gsm8k-861 wrong fallback "The difference is 3 - 1 = 2 more badges."
smol-gsm8k-82 no_answer fallback cut off
smol-gsm8k-530 wrong marker "The final answer is 8 hours."
smol-gsm8k-1047 no_answer fallback cut off ("This is ")
smol-gsm8k-995 wrong marker "#### 44"
smol-gsm8k-829 no_answer fallback cut off
smol-gsm8k-621 no_answer fallback cut off
smol-gsm8k-976 no_answer fallback cut off after "6"
smol-gsm8k-733 no_answer fallback cut off
smol-gsm8k-1194 no_answer fallback cut off
smol-gsm8k-447 wrong fallback a loop of additions ending "= 218 points."
smol-test/algebra/694.json wrong marker "The answer is 7:3."
smol-test/number_theory/516.json no_answer fallback cut off in a run of digits
smol-test/precalculus/43.json no_answer fallback cut off
smol-test/algebra/170.json no_answer fallback cut off
smol-test/algebra/1265.json wrong marker
smol-test/algebra/276.json no_answer fallback cut off in a loop
smol-test/intermediate_algebra/1797.json no_answer fallback cut off
smol-test/algebra/661.json wrong marker
smol-test/number_theory/72.json wrong marker
smol-test/number_theory/533.json no_answer fallback cut off
smol-minerva_math-75 no_answer fallback cut off
smol-minerva_math-158 no_answer fallback cut off in a fraction
smol-minerva_math-50 no_answer fallback cut off
smol-minerva_math-37 no_answer fallback cut off
smol-olympiadbench-2636 no_answer fallback cut off
smol-olympiadbench-2831 no_answer fallback cut off
smol-olympiadbench-2969 no_answer fallback cut off
smol-olympiadbench-2095 no_answer fallback cut off
smol-gpqa_diamond-recZWeueB7lSPR6wN-p0 wrong choice "The correct answer is (C) ..."
smol-gpqa_diamond-rechgQucGlrnt8KRV-p0 wrong choice "The correct answer is D) ..."
smol-gpqa_diamond-recWPMm91mGDLXONm-p0 no_answer choice a reagent list, no option named
smol-gpqa_diamond-recypVp2NmPlBKVTp-p0 wrong choice "(A)" alone
smol-gpqa_diamond-rec32C1ZEapBnCC0E-p0 wrong choice "The correct answer is D. 0.6."
smol-gpqa_diamond-recL9MFV5zmdlle5T-p0 no_answer choice one sentence starting with the article "A"
smol-gpqa_diamond-recrs0kUo7Ua1xhKO-p0 no_answer choice cut off
smol-gpqa_diamond-recmI7EiLv72PxmYK-p0 no_answer choice "The correct answer is:" and then all the options, cut off
smol-gpqa_diamond-recihePFulRgNKsIn-p0 wrong option_text "The correct answer is A = H3O+, B = CH3COOH": option D's text
smol-gpqa_diamond-recpJmTOXx6T48nDJ-p0 wrong choice "The correct answer is D) -3.80 kcal"
smol-gpqa_diamond-recPSTGXK3P39yNYT-p0 wrong option_text the last line "A) 1": option A with its own text
smol-gpqa_diamond-rec5rjeLsEq5Fg7Oj-p0 wrong choice "The correct answer is (D)."
"""

if __name__ == "__main__":
    main()
