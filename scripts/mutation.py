"""Mutation testing of the security-critical modules (`make mutation`), with cosmic-ray.

For each module of config/mutation.toml: copy the repository (its working tree, uncommitted
changes included) to a scratch folder, check the module's tests pass there unmutated, let
cosmic-ray list the mutants (its core operators and the string marker of
scripts/mutation_operators.py), keep those in the module's `only` definitions, sample them
when asked, and run the module's tests against each. cosmic-ray writes each mutant to the
file on disk, so the servers the tests start in other processes load it too; the working
tree itself is never touched. Prints the score per module and every survivor.

    python scripts/mutation.py [--module PATH ...] [--sample N] [--keep]

Exit status: 0 when every module run reached its target, 1 otherwise, 2 for a bad config or
tests that fail before any mutation.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shlex
import shutil
import subprocess  # nosec B404 - runs git, pytest and cosmic-ray from our own venv
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "mutation.toml"
PLUGIN = "lct_mutation_operators-1.0.dist-info"


@dataclass(frozen=True)
class Target:
    """One module to mutate and the tests that cover it."""

    path: str
    tests: tuple[str, ...]
    only: tuple[str, ...] = ()
    # A pytest `-k` expression: leaves out the tests of its files that never load the module
    # and could only fail for another reason (a Redis variant slowed down by the mutant runs).
    keyword: str | None = None


@dataclass(frozen=True)
class Settings:
    """What the whole run needs: the targets, a score to reach and operators left out."""

    targets: tuple[Target, ...]
    target_score: float
    exclude_operators: tuple[str, ...]
    pytest_args: tuple[str, ...]


@dataclass
class Score:
    """The outcome of one module's mutants."""

    path: str
    killed: int = 0
    incompetent: int = 0
    skipped: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def tested(self) -> int:
        return self.killed + len(self.survivors)

    @property
    def ratio(self) -> float:
        return self.killed / self.tested if self.tested else 1.0


def load_settings(path: Path = CONFIG) -> Settings:
    """Read config/mutation.toml."""
    raw = tomllib.loads(path.read_text())
    targets = tuple(
        Target(
            path=m["path"],
            tests=tuple(m["tests"]),
            only=tuple(m.get("only", ())),
            keyword=m.get("keyword"),
        )
        for m in raw["module"]
    )
    return Settings(
        targets=targets,
        target_score=float(raw["target-score"]),
        exclude_operators=tuple(raw.get("exclude-operators", ())),
        pytest_args=tuple(raw.get("pytest-args", ())),
    )


def definition_lines(source: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Return the line ranges of top-level definitions (`name` or `Class.method`) in `names`.

    Raises KeyError naming a definition the source does not have.
    """
    found: dict[str, tuple[int, int]] = {}
    for node in ast.parse(source).body:
        span = (node.lineno, node.end_lineno or node.lineno)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = span
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                        found[f"{node.name}.{member.name}"] = (
                            member.lineno,
                            member.end_lineno or member.lineno,
                        )
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = span
    missing = [name for name in names if name not in found]
    if missing:
        raise KeyError(", ".join(missing))
    return [found[name] for name in names]


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Return the (line, column) spans of every type annotation in `source`.

    A mutant there (`str | None` made `str + None`) tests the type hints, not the code.
    """
    spans = []
    for node in ast.walk(ast.parse(source)):
        hints: list[ast.expr | None] = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            hints.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            hints.append(node.returns)
        for hint in hints:
            if hint is not None and hint.end_lineno is not None and hint.end_col_offset is not None:
                spans.append(
                    ((hint.lineno, hint.col_offset), (hint.end_lineno, hint.end_col_offset))
                )
    return spans


def arithmetic_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Return the (line, column) spans of the binary operations in `source`.

    cosmic-ray also takes the keyword-only marker `*` of a signature for a multiplication;
    a binary-operator mutant outside these spans is one of those, not a change of the code.
    """
    return [
        ((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.BinOp | ast.AugAssign)
        and node.end_lineno is not None
        and node.end_col_offset is not None
    ]


def copy_tree(destination: Path) -> None:
    """Copy the working tree (tracked and untracked, not ignored files) to `destination`."""
    listed = subprocess.run(  # nosec B603 B607 - fixed arguments
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def register_operators(scratch: Path) -> Path:
    """Make scripts/mutation_operators.py a cosmic-ray operator provider named `lct`."""
    site = scratch / ".mutation" / "site"
    info = site / PLUGIN
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lct-mutation-operators\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[cosmic_ray.operator_providers]\nlct = scripts.mutation_operators:OperatorProvider\n"
    )
    return site


def run(command: list[str], scratch: Path, env: dict[str, str], **options: Any) -> Any:
    return subprocess.run(command, cwd=scratch, env=env, check=False, **options)  # noqa: S603  # nosec B603


def test_command(settings: Settings, target: Target) -> list[str]:
    keyword = ["-k", target.keyword] if target.keyword else []
    return [sys.executable, "-m", "pytest", *settings.pytest_args, *keyword, *target.tests]


def mutate_module(
    settings: Settings, target: Target, scratch: Path, env: dict[str, str], sample: int | None
) -> Score | None:
    """Run one module's mutants; None when its tests fail unmutated."""
    score = Score(path=target.path)
    command = test_command(settings, target)
    started = time.monotonic()
    baseline = run(command, scratch, env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if baseline.returncode != 0:
        print(f"{target.path}: its tests fail before any mutation:\n{baseline.stdout[-2000:]}")
        return None
    slug = target.path.replace("/", "_").removesuffix(".py")
    config = scratch / ".mutation" / f"{slug}.toml"
    session = scratch / ".mutation" / f"{slug}.sqlite"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.path}"\n'
        f"timeout = {max(30.0, elapsed * 3 + 10):.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(shlex.join(command))}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    init = run([cosmic_ray, "init", str(config), str(session)], scratch, env)
    if init.returncode != 0:
        print(f"{target.path}: cosmic-ray init failed")
        return None
    select(settings, target, scratch, session, sample, score)
    run([cosmic_ray, "exec", str(config), str(session)], scratch, env)
    collect(session, score)
    return score


def select(
    settings: Settings,
    target: Target,
    scratch: Path,
    session: Path,
    sample: int | None,
    score: Score,
) -> None:
    """Mark as skipped the mutants outside `only`, of excluded operators, or not sampled."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    source = (scratch / target.path).read_text()
    spans = definition_lines(source, target.only) if target.only else None
    hints = annotation_spans(source)
    arithmetic = arithmetic_spans(source)
    with use_db(str(session), WorkDB.Mode.open) as db:
        kept: list[str] = []
        skipped: list[str] = []
        for item in db.work_items:
            mutation = item.mutations[0]
            line = mutation.start_pos[0]
            inside = spans is None or any(low <= line <= high for low, high in spans)
            excluded = any(op in mutation.operator_name for op in settings.exclude_operators)
            position = tuple(mutation.start_pos)
            hint = any(start <= position < end for start, end in hints)
            marker = mutation.operator_name.startswith("core/ReplaceBinaryOperator_") and not any(
                start <= position < end for start, end in arithmetic
            )
            if inside and not excluded and not hint and not marker:
                kept.append(item.job_id)
            else:
                skipped.append(item.job_id)
        if sample is not None and sample < len(kept):
            # The same sample every run of the same code: seeded by the module's path.
            chosen = set(random.Random(target.path).sample(kept, sample))  # noqa: S311  # nosec B311
            skipped += [job for job in kept if job not in chosen]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        score.skipped = len(skipped)


def collect(session: Path, score: Score) -> None:
    """Count killed and surviving mutants; describe each survivor by line, operator and diff."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.INCOMPETENT:
                score.incompetent += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                mutation = item.mutations[0]
                changed = [
                    line
                    for line in (result.diff or "").splitlines()
                    if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
                ]
                score.survivors.append(
                    f"line {mutation.start_pos[0]} {mutation.operator_name}: "
                    + " / ".join(text.strip() for text in changed)
                )
            else:
                score.killed += 1


def main(argv: list[str] | None = None) -> int:
    """Run the mutants of the chosen modules (all of config/mutation.toml by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a module path of the config")
    parser.add_argument("--sample", type=int, help="run at most N mutants per module")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    settings = load_settings()
    targets = settings.targets
    if args.module:
        unknown = set(args.module) - {t.path for t in targets}
        if unknown:
            print(f"not in {CONFIG.relative_to(ROOT)}: {', '.join(sorted(unknown))}")
            return 2
        targets = tuple(t for t in targets if t.path in args.module)
    scratch = Path(tempfile.mkdtemp(prefix="mutation-"))
    scores: list[Score] = []
    try:
        copy_tree(scratch)
        site = register_operators(scratch)
        env = {
            **os.environ,
            "PYTHONPATH": f"{scratch}:{site}",
            # A mutant written in the same second as the original, of the same size, would
            # otherwise be read from a stale bytecode cache.
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for target in targets:
            score = mutate_module(settings, target, scratch, env, args.sample)
            if score is None:
                return 2
            scores.append(score)
            report(score)
    finally:
        if args.keep:
            print(f"scratch copy kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\nmodule score (killed / run)")
    for score in scores:
        print(f"  {score.path}: {score.ratio:.0%} ({score.killed}/{score.tested})")
    return 0 if all(s.ratio >= settings.target_score for s in scores) else 1


def report(score: Score) -> None:
    print(
        f"{score.path}: {score.ratio:.0%} killed ({score.killed}/{score.tested}; "
        f"{score.incompetent} incompetent, {score.skipped} not run)",
        flush=True,
    )
    for survivor in score.survivors:
        print(f"  survived: {survivor}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
