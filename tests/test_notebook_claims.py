"""The numbers the notebooks' prose quotes, checked against what the notebooks print.

The learner's cells hold no asserts about one model's or one dataset's numbers (a learner who changes
a parameter must never meet an error they did not cause). Instead every notebook prints its numbers
with a name, and this module executes each notebook once per test session on the default path (the
bundled sample and the shipped model, in smoke mode as CI runs them) and checks every entry of
``CLAIMS`` in both directions: the prose quotes the number, and the output prints it.

The same run checks two things about the notebooks' surroundings: they are run from a folder whose
name has a space, with temporary files under another such folder, so that a shell command with an
unquoted path fails (and fails its cell); and the training runs go into a temporary ``CAMVID_RUNS``
folder, never into the repository's ``runs/``, where a learner keeps their own models.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from notebook_runner import REPO, execute_notebook, notebook_env, printed_text, prose_text, read_notebook

# each run executes whole notebooks (minutes): outside the contributors' short run, in `pytest`
pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@dataclass(frozen=True)
class Claim:
    """``quoted`` (a phrase of the prose, holding one number) must be what ``printed`` (a regular
    expression with one group, matched against the notebook's output) prints, times ``scale`` and
    rounded to the quoted number's decimals."""

    notebook: str
    printed: str
    quoted: str
    scale: float = 1.0

    def __str__(self) -> str:
        return f"{self.notebook[:2]}: {self.quoted}"


N01, N02, N03 = "01_data_exploration.ipynb", "02_building_the_unet.ipynb", "03_focal_loss_and_training.ipynb"
N04, N05, N06 = "04_iou_evaluation.ipynb", "05_inspecting_predictions.ipynb", "06_video.ipynb"
N08 = "08_transfer_learning.ipynb"

CLAIMS = [
    Claim(N01, r"^void: ([\d.]+)% of the pixels", "2.7% of the pixels are void"),
    Claim(N01, r"^most pixels: Road ([\d.]+)%", "Road has 34%"),
    Claim(N01, r"(\d+) times fewer", "68 times fewer pixels than Road"),
    Claim(N01, r"^([\d.]+)% of the pixels differ", "2.8% of the pixels change"),
    Claim(N01, r"^(\d+) pixels got ids that are no class", "no class at all: 1,933 pixels"),
    Claim(N01, r"^(\d+) pixels got another real class", "2,834 pixels get a *real* class"),
    Claim(N02, r"\| (\d+) parameters", "the block has 5,928 parameters"),
    Claim(N02, r"^ +total: ([\d,]+)", "The shipped model has 4.37 million parameters", 1e-6),
    Claim(N02, r"^ +down 4: +[\d,]+ +\( *([\d.]+)%\)", "**46%** of the network"),
    Claim(N02, r"^ +down 4: +([\d,]+)", "holds 1.99 million", 1e-6),
    Claim(N02, r"^ +up 1: +[\d,]+ +\( *([\d.]+)%\)", "million (30%)"),
    Claim(N02, r"^([\d,]+) parameters", "the same architecture has 31 million parameters", 1e-6),
    Claim(N02, r"^largest probability, on average: ([\d.]+)", "gets about 0.11 on average"),
    Claim(N02, r"^cross-entropy: ([\d.]+)", "the cross-entropy is 2.41"),
    Claim(N02, r"^pixels right: ([\d.]+)%", "right for 9.5% of the pixels"),
    Claim(N02, r"^Road: (\d+)% of the labelled pixels", "(28% of this frame)"),
    Claim(N02, r"^([\d.]+)% of the labelled pixels are right", "now gets 93.6% right"),
    Claim(N03, r"easy pixels \((\d+)% of all\)", "For the shipped model 91% of the labelled pixels"),
    Claim(N03, r"^cross-entropy: easy pixels \(\d+% of all\) carry ([\d.]+)%", "carry 59% of it"),
    Claim(N03, r"^ +focal loss: easy pixels \(\d+% of all\) carry ([\d.]+)%", "they carry only 17%"),
    Claim(N03, r"per-pixel focal\) = ([\d.]+)", "(cosine 0.87 with the shipped model)"),
    Claim(N03, r"training frames: (\d+) labelled pixels", "3.4 million labelled pixels", 1e-6),
    Claim(N03, r"^ +Pole: .* median-frequency +([\d.]+)", "gives pole 7.3"),
    Claim(N03, r"^ +Road: .* median-frequency +([\d.]+)", "and road 0.11"),
    Claim(N03, r"^ +Pole: .* inverse-sqrt +([\d.]+)", "pole 5.2 against road"),
    Claim(N03, r"^ +Road: .* inverse-sqrt +([\d.]+)", "against road 0.63"),
    Claim(N03, r"^val mIoU as it trained: ([\d.]+)", "Its validation mIoU starts at 0.622"),
    Claim(N03, r"^val mIoU as it trained: .* ([\d.]+)$", "and 0.642"),
    Claim(N03, r"^seed setup: .* +val mIoU ([\d.]+)", "big step at this budget: 0.203"),
    Claim(N03, r"^\+ AdamW lr 2e-3 with one-cycle +val mIoU ([\d.]+)", "to 0.392 val mIoU"),
    Claim(N03, r"^AdamW \+ one-cycle, scored with an EMA .* +val mIoU ([\d.]+)", "points (0.394), inside"),
    Claim(N03, r"^\+ scale 0.75-1.5, crop, flips +val mIoU ([\d.]+)", "(to 0.316)"),
    Claim(N03, r"^\+ class weights inverse sqrt +val mIoU ([\d.]+)", "(to 0.369), and more"),
    Claim(N03, r"^class weights median frequency \(instead\) +val mIoU ([\d.]+)", "instead score 0.350"),
    Claim(N03, r"^gamma 0 = cross-entropy \(instead of 2\) +val mIoU ([\d.]+)", "0.384 against 0.369"),
    Claim(N03, r"^\+ twice the width +val mIoU ([\d.]+)", "gives 0.404"),
    Claim(N03, r"^class weights median frequency .* Bicyclist ([\d.]+)", "(bicyclist 0.24, sign 0.09)"),
    Claim(N04, r"^sky ([\d.]+)", "= 0.833. Road"),
    Claim(N04, r"\| mIoU ([\d.]+)", "mIoU, is 0.756"),
    Claim(N04, r"^pedestrian IoU: mean of batches ([\d.]+)", "Averaging per batch gives 0.5"),
    Claim(N04, r"^mIoU: +mean of batches [\d.]+ \| whole split ([\d.]+)", "The mIoU moves from 0.952"),
    Claim(N04, r"^Road +([\d.]+)", "has an IoU of 0.975"),
    Claim(N04, r"^Sky +([\d.]+)", "sky 0.88"),
    Claim(N04, r"^Building +([\d.]+)", "building 0.86"),
    Claim(N04, r"^Pole +([\d.]+)", "only 0.28"),
    Claim(N04, r"^Pedestrian +([\d.]+)", "0.31. The mIoU"),
    Claim(N04, r"^mIoU +([\d.]+)", "The mIoU is 0.679"),
    Claim(N04, r"^worst: Pole, IoU [\d.]+, recall (\d+)%", "found only 53% of the time"),
    Claim(N04, r"taken for Building (\d+)%", "18% of its pixels are called building"),
    Claim(N04, r"Building \d+%, Tree (\d+)%", "and 11% tree"),
    Claim(N04, r"^Road +[\d.]+ +([\d.]+)", "dark for road (98% recall)", 100),
    Claim(N04, r"^Pedestrian taken for Fence: (\d+)%", "26% of the pedestrian pixels are called fence"),
    Claim(
        N04, r"^Bicyclist taken for Pedestrian: (\d+)%", "21% of the bicyclist pixels are called pedestrian"
    ),
    Claim(N04, r"^Pole taken for Building: (\d+)%", "18% of the pole pixels"),
    Claim(N04, r"^SignSymbol taken for Building: (\d+)%", "and 17% of the sign pixels"),
    Claim(N04, r"^pixel accuracy ([\d.]+) \| class", "93% of the labelled pixels are right", 100),
    Claim(N04, r"\| class accuracy ([\d.]+)", "the mean recall over classes is 0.84"),
    Claim(N04, r"mean of per-frame mIoU: ([\d.]+)", "the mean of per-frame mIoU (0.580)"),
    Claim(N04, r"^ +mIoU +[\d.]+ +([\d.]+)", "scores an mIoU of 0.688 on them"),
    Claim(N05, r"^best val mIoU during training: ([\d.]+)", "(here 0.642)"),
    Claim(N05, r"epoch (\d+)$", "(here 23, the 24th"),
    Claim(N05, r"^Road +([\d.]+)", "Road (IoU 0.981)"),
    Claim(N05, r"^Car +([\d.]+)", "Car (0.868)"),
    Claim(N05, r"^Tree +([\d.]+)", "Tree (0.823)"),
    Claim(N05, r"^Sky +([\d.]+)", "Sky (0.807)"),
    Claim(N05, r"^pixel accuracy +([\d.]+)", "(0.926) looks far better"),
    Claim(N05, r"^mIoU +([\d.]+)", "than the mIoU (0.482)"),
    Claim(N05, r"^Pavement +[\d.]+ +([\d.]+)", "Pavement has a recall of 0.711"),
    Claim(N05, r"^Pavement +([\d.]+)", "an IoU of only 0.305"),
    Claim(N05, r"^Building +([\d.]+)", "gets 0.006"),
    Claim(N05, r"^Fence +([\d.]+)", "so it scores 0.017"),
    Claim(N05, r"^SignSymbol +([\d.]+)", "and SignSymbol 0.18"),
    Claim(N05, r"^Pole +[\d.]+ +([\d.]+)", "It finds 56% of the real pole pixels", 100),
    Claim(N05, r"^Pole +([\d.]+)", "Pole IoU of 0.353"),
    Claim(N05, r"^frame +\d+ \S+: mIoU ([\d.]+)", "goes from 0.482"),
    Claim(N05, r"^frame +\d+ 0016E5_07991: mIoU ([\d.]+)", "to 0.640 (`0016E5_07991`)"),
    Claim(N05, r"^split mIoU over 3 frames: ([\d.]+)", "all three frames gives 0.679"),
    Claim(N05, r"^mean of the frame scores: ([\d.]+)", "the mean of the three (0.580)"),
    Claim(N05, r"'Road': '([\d.]+)%'", "Road (35.7%)"),
    Claim(N05, r"'Tree': '([\d.]+)%'", "Tree (18.9%)"),
    Claim(N05, r"'Building': '([\d.]+)%'", "Building (15.3%)"),
    Claim(N05, r"'Sky': '([\d.]+)%'", "Sky (11.6%)"),
    Claim(N05, r"'Fence': '([\d.]+)%'", "Fence (6.5%)"),
    Claim(N06, r"clip mIoU ([\d.]+)", "an mIoU of 0.646 over the 12 crops"),
    Claim(N06, r"pixel accuracy ([\d.]+)", "(pixel accuracy 0.915)"),
    Claim(N06, r"over the clip: model ([\d.]+)%", "14.9% of the labelled pixels change class"),
    Claim(N06, r"\| labels ([\d.]+)%", "and 12.5% in the labels"),
    Claim(N06, r"^model minus labels: ([\d.]+) points at the first", "by 3.4 points at the first"),
    Claim(N06, r"points at the first step, ([\d.]+) at the last", "and 0.9 at the last"),
    Claim(N06, r"^Car ([\d.]+) \(labels", "Car (0.54 against"),
    Claim(N06, r"^Car [\d.]+ \(labels ([\d.]+)\)", "the labels' 0.36)"),
    Claim(N06, r"^ +model, window 3 +[\d.]+ +([\d.]+)%", "to 7.3%), well below"),
    Claim(N06, r"^ +model, window 3 +([\d.]+)", "to 0.592)"),
    Claim(N06, r"^frame mIoU ([\d.]+) ->", "from\n0.617 to 0.620"),
    Claim(N06, r"^frame mIoU [\d.]+ -> ([\d.]+)", "to 0.620; on the first"),
    Claim(N06, r"with flip TTA; ([\d.]+)% of the pixels differ", "flip TTA changes 2.2% of the pixels"),
    Claim(N08, r"^([\d.]+) M parameters, 1000 ImageNet classes", "has 4.65 million parameters"),
    Claim(N08, r"(\d+)% car pixels", "The square is 93% car"),
    Claim(N08, r"\('beach wagon', ([\d.]+)\)", "beach wagon at 0.49"),
    Claim(N08, r"^stride 32: \(1, 320, (\d+), ", "gives 12 rows"),
    Claim(N08, r"^total +([\d,]+)$", "of the 5.2 million parameters", 1e-6),
    Claim(N08, r"^encoder \(ImageNet weights\) +([\d,]+)$", "the encoder's 2.96 million", 1e-6),
    Claim(N08, r"^best val mIoU during training: ([\d.]+)", "is 0.712 on the 101 SegNet validation frames"),
    Claim(N08, r"^U-Net on Lite0 +mIoU ([\d.]+)", "scores 0.722 and the course"),
    Claim(N08, r"^course U-Net +mIoU ([\d.]+)", "the course U-Net 0.679"),
    Claim(N08, r"^U-Net on Lite0 \(base 16\), ImageNet weights +val mIoU ([\d.]+)", "reaches 0.527 from"),
    Claim(N08, r"^U-Net on Lite0 .*random weights +val mIoU ([\d.]+)", "against 0.329 from random"),
    Claim(N08, r"^course U-Net \(base 24\), from scratch +val mIoU ([\d.]+)", "and 0.339 for the course"),
    Claim(N08, r"ImageNet weights +val mIoU .* thin ([\d.]+)", "(0.182 against"),
    Claim(N08, r"from scratch +val mIoU .* thin ([\d.]+)", "against 0.077 for the course"),
    Claim(N08, r"ImageNet weights +val mIoU .* (\d+) s/epoch", "36 seconds an epoch"),
    Claim(N08, r"from scratch +val mIoU .* (\d+) s/epoch", "an epoch against 48"),
]

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def normal(text: str) -> str:
    """Collapse runs of whitespace (prose is wrapped anywhere) into one space."""
    return re.sub(r"\s+", " ", text)


def check_claim(claim: Claim, prose: str, printed: str) -> list[str]:
    """Return what is wrong with one claim: not quoted, not printed, or a different number."""
    quoted = normal(claim.quoted)
    if quoted not in normal(prose):
        return [f"{claim.notebook}: the prose no longer says {quoted!r}"]
    match = re.search(claim.printed, printed, re.M)
    if match is None:
        return [f"{claim.notebook}: nothing printed matches {claim.printed!r}"]
    number = NUMBER.search(quoted).group().replace(",", "")
    exponent = Decimal(number).as_tuple().exponent
    value = Decimal(match.group(1).replace(",", "")) * Decimal(str(claim.scale))
    shown = value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    if shown != Decimal(number):
        return [f"{claim.notebook}: the prose says {quoted!r}, the notebook printed {match.group(0)!r}"]
    return []


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (empty if there is none)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@dataclass
class Executed:
    notebooks: dict  # name -> executed notebook
    errors: dict  # name -> the error that stopped it
    base: Path  # the folder with a space in its name
    runs: Path
    repo_runs_before: dict


@pytest.fixture(scope="session")
def executed(tmp_path_factory) -> Executed:
    """Every notebook, executed once on the default path from a folder named ``ML course``."""
    base = tmp_path_factory.mktemp("claims") / "ML course"
    runs, tmp, cwd = base / "my runs", base / "temp files", base / "notebooks"
    for folder in (runs, tmp, cwd):
        folder.mkdir(parents=True)
    before = snapshot(REPO / "runs")
    env = notebook_env(runs, TMPDIR=str(tmp))
    done, errors = {}, {}
    for path in NOTEBOOKS:
        shutil.copy(path, cwd / path.name)
        nb = read_notebook(cwd / path.name)
        try:
            done[path.name] = execute_notebook(nb, cwd, env)
        except CellExecutionError as err:
            errors[path.name] = str(err)[-3000:]
            done[path.name] = nb
        nbformat.write(nb, cwd / path.name)  # executed, to read when a claim fails
    return Executed(done, errors, base, runs, before)


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_each_notebook_runs_clean_on_the_default_path(executed, name):
    assert name not in executed.errors, executed.errors.get(name)


@pytest.mark.parametrize("claim", CLAIMS, ids=str)
def test_the_prose_quotes_what_the_notebook_prints(executed, claim):
    nb = executed.notebooks[claim.notebook]
    assert claim.notebook not in executed.errors, executed.errors[claim.notebook]
    assert check_claim(claim, prose_text(nb), printed_text(nb)) == []


def test_the_notebooks_write_runs_into_camvid_runs_and_never_into_the_repository(executed):
    assert snapshot(REPO / "runs") == executed.repo_runs_before, (
        "a notebook wrote into the repository's runs/"
    )
    assert (executed.runs / "03_seed_setup" / "best.pt").is_file(), "notebook 3 must honour CAMVID_RUNS"


@pytest.mark.parametrize(
    ("name", "written"), [(N05, "predictions/my_street_mask.png"), (N06, "cli.gif")], ids=["05", "06"]
)
def test_the_shell_commands_run_with_quoted_paths_under_a_folder_with_a_space(executed, name, written):
    assert name not in executed.errors, executed.errors.get(name)
    printed = printed_text(executed.notebooks[name])
    command = next(line for line in printed.splitlines() if " -m camvid_utils predict " in line)
    assert "ML course" in command and "'" in command, f"the printed command is not quoted: {command}"
    assert list((executed.base / "temp files").glob(f"*/{written}")), f"the command did not write {written}"


# --- the check itself, on a notebook built here -------------------------------------------------


def tiny(prose: str, printed: str):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(...)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    nb.cells = [nbformat.v4.new_markdown_cell(prose), code]
    return prose_text(nb), printed_text(nb)


def test_a_claim_fails_when_the_prose_or_the_code_changes_its_number():
    claim = Claim("99.ipynb", r"^val mIoU: ([\d.]+)", "The mIoU is 0.679")
    assert check_claim(claim, *tiny("Read it: The mIoU\nis 0.679 here.", "val mIoU: 0.6792\n")) == []
    assert check_claim(claim, *tiny("The mIoU is 0.678 here.", "val mIoU: 0.6792\n")), "prose changed"
    assert check_claim(claim, *tiny("The mIoU is 0.679 here.", "val mIoU: 0.6812\n")), "code changed"
    assert check_claim(claim, *tiny("The mIoU is 0.679 here.", "mIoU 0.679\n")), "nothing printed"
    share = Claim("99.ipynb", r"^accuracy ([\d.]+)", "93% are right", 100)
    assert check_claim(share, *tiny("93% are right", "accuracy 0.932\n")) == []
    assert check_claim(share, *tiny("93% are right", "accuracy 0.942\n"))
    half_up = Claim("99.ipynb", r"flicker ([\d.]+)%", "to 7.3%")
    assert check_claim(half_up, *tiny("to 7.3%", "flicker 7.25%\n")) == []
