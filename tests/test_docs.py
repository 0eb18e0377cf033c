"""The documentation site: every public name has a reference entry generated from a
docstring that documents its arguments and what it returns, the extension points say what
a subclass provides, and the code on the "Extending scoresde" page runs.

`mkdocs build --strict` itself (broken cross-references, missing pages) runs in `.ci/run`.
"""

import inspect
import pathlib
import re
import types

import scoresde as sd


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = {
    "scoresde": sd,
    "scoresde.nn": sd.nn,
    "scoresde.datasets": sd.datasets,
    "scoresde.metrics": sd.metrics,
    "scoresde.plotting": sd.plotting,
}

# Classes whose instances the library hands back rather than users build, and an exception:
# their docstrings describe fields, not constructor arguments.
NOT_CONSTRUCTED_BY_USERS = {
    "scoresde.CheckpointError": "an exception, raised with one message",
    "scoresde.FitResult": "returned by fit; its docstring lists the fields",
    "scoresde.LogProbResult": "returned by log_prob; its docstring lists the fields",
    "scoresde.SampleResult": "returned by sample; its docstring lists the fields",
    "scoresde.TrainState": "built by fit and load_checkpoint; its docstring lists the fields",
    "scoresde.NCSNv2Hyperparameters": "returned by ncsnv2_hyperparameters",
}

EXTENSION_POINTS = [
    sd.AbstractSDE,
    sd.AbstractLinearSDE,
    sd.AbstractSampler,
    sd.AbstractPredictor,
    sd.AbstractCorrector,
    sd.AbstractObjective,
    sd.AbstractTimeGrid,
]


def _public_names() -> list[str]:
    names = []
    for module_name, module in PUBLIC_MODULES.items():
        exported = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for name in exported:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType):
                continue
            names.append(f"{module_name}.{name}")
    return sorted(names)


def _resolve(path: str):
    module_name, _, name = path.rpartition(".")
    return getattr(PUBLIC_MODULES[module_name], name)


def _documented() -> set[str]:
    directive = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
    found = set()
    for page in DOCS.rglob("*.md"):
        if "notebooks" in page.parts:
            continue
        found.update(directive.findall(page.read_text(encoding="utf-8")))
    return found


def _takes_arguments(obj) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in params)


def _returns_something(fn) -> bool:
    annotation = inspect.signature(fn).return_annotation
    return annotation not in (None, type(None), "None")


PUBLIC = _public_names()


def test_public_names_found():
    # Guards the test itself: the walk over the public modules sees the whole API.
    assert len(PUBLIC) > 100
    assert "scoresde.sample" in PUBLIC and "scoresde.metrics.mmd" in PUBLIC


def test_every_public_name_has_reference_entry():
    documented = _documented()
    missing = [name for name in PUBLIC if name not in documented]
    assert not missing, (
        f"no `::: name` entry in docs/ for {missing}; add each to the matching docs/api/ page."
    )


def _section_problems(name: str) -> list[str]:
    obj = _resolve(name)
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return [f"{name} has no docstring"]
    if inspect.isclass(obj):
        if inspect.isabstract(obj) or obj.__name__.startswith("Abstract"):
            return []  # never constructed; test_extension_points checks what they say
        if name in NOT_CONSTRUCTED_BY_USERS:
            return []
    problems = []
    if _takes_arguments(obj) and "**Arguments:**" not in doc:
        problems.append(f"{name} takes arguments but has no **Arguments:**")
    if not inspect.isclass(obj) and _returns_something(inspect.unwrap(obj)):
        if "**Returns:**" not in doc:
            problems.append(f"{name} returns a value but has no **Returns:**")
    return problems


def test_docstrings_have_sections():
    problems = [p for name in PUBLIC for p in _section_problems(name)]
    assert not problems, "\n".join(problems)


def test_exceptions_are_public_names():
    # A stale entry would silently excuse nothing; keep the list honest.
    assert set(NOT_CONSTRUCTED_BY_USERS) <= set(PUBLIC)


def _extension_point_problems(cls) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    if not ("subclass" in doc.lower() and "provide" in doc.lower()):
        return [f"{cls.__name__}'s docstring does not say what a subclass provides"]
    problems = []
    for name in sorted(getattr(cls, "__abstractmethods__", ())):
        if not inspect.getdoc(getattr(cls, name)):
            problems.append(f"{cls.__name__}.{name} has no docstring")
        if f"`{name}" not in doc:
            problems.append(f"{cls.__name__}'s docstring does not name `{name}`")
    return problems


def test_extension_points():
    problems = [p for cls in EXTENSION_POINTS for p in _extension_point_problems(cls)]
    assert not problems, "\n".join(problems)


def _python_blocks(page: pathlib.Path) -> list[str]:
    """The page's Python code blocks, each padded with blank lines so that a traceback
    names the line of the page."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        first_line = text.count("\n", 0, match.start(1))
        blocks.append("\n" * first_line + match.group(1))
    return blocks


def test_extending_page_runs():
    blocks = _python_blocks(DOCS / "extending.md")
    assert len(blocks) >= 2
    namespace: dict = {"__name__": "docs_extending"}
    for block in blocks:
        exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102


def test_mistakes_page_markers():
    text = (DOCS / "mistakes.md").read_text(encoding="utf-8")
    begin = "<!-- BEGIN mistakes table: generated by tests/test_mistakes.py, do not edit -->"
    end = "<!-- END mistakes table -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert text.index(begin) < text.index(end)
