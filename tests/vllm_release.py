"""Check our vLLM uses against a released vLLM wheel's sources, statically (never installed).

Our side: every ``vllm`` import in the package and in ``bench/`` (``ast``), every call of an
imported vLLM symbol, every method call and attribute read on a receiver we can type (a local
assigned from a vLLM class, an annotated parameter, ``super()`` / ``self`` in our subclasses of
vLLM classes, and by convention ``llm`` = ``vllm.LLM`` and ``llm_engine`` = ``LLMEngine``), and
every candidate location of a moved symbol in :data:`screenspot_eval.backends.vllm.compat.MOVED`.
The release side: the wheel's ``.py`` files, resolved through imports, re-exports (``vllm``'s
lazy ``MODULE_ATTRS``) and base classes. A use that the release lacks, or a call whose
arguments the release's signature refuses, is reported with our ``file:line``.

Run against any release: ``.venv/bin/python tests/vllm_release.py 0.27.0 [0.34.0 ...]``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("screenspot_eval", "bench")
CACHE = Path(
    os.environ.get("SCREENSPOT_WHEEL_CACHE", Path.home() / ".cache/screenspot-eval/wheels")
)
#: Receivers typed by name, wherever they appear (``self.llm``, ``engine.llm``, ``llm``).
NAMED_RECEIVERS = {
    "llm": ("vllm", "LLM"),
    "llm_engine": ("vllm", "LLMEngine"),
    "engine_client": ("vllm.engine.protocol", "EngineClient"),
}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


# --- the release ------------------------------------------------------------------------------


def wheel(version: str, cache_dir: Path = CACHE) -> Path:
    """The release's wheel, downloaded once with pip (``--no-deps``: nothing is installed)."""
    found = sorted(cache_dir.glob(f"vllm-{version}-*.whl"))
    if not found:
        cache_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT")}
        env["PIP_CONFIG_FILE"] = os.devnull
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
             ":all:", f"vllm=={version}", "-d", str(cache_dir)],
            check=True, env=env,
        )  # fmt: skip
        found = sorted(cache_dir.glob(f"vllm-{version}-*.whl"))
    return found[0]


@dataclass(frozen=True)
class Found:
    """What a dotted name is in the release: a module, class, function, instance or value."""

    kind: str  # module | class | function | instance | value | dynamic
    module: str
    node: ast.AST | None = None
    instance_of: tuple[str, str] | None = None  # (module, class) for kind == instance


class Release:
    """A vLLM wheel's Python sources, parsed on demand."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self.version = path.name.split("-")[1]
        self._trees: dict[str, ast.Module | None] = {}

    def tree(self, module: str) -> ast.Module | None:
        if module not in self._trees:
            base = module.replace(".", "/")
            source = next(
                (p for p in (f"{base}.py", f"{base}/__init__.py") if p in self.names), None
            )
            self._trees[module] = ast.parse(self.zip.read(source)) if source else None
        return self._trees[module]

    def absolute(self, module: str, target: str) -> str:
        """``target`` (``.x.y``, relative to ``module``) as an absolute module name."""
        level = len(target) - len(target.lstrip("."))
        if not level:
            return target
        package = f"{module.replace('.', '/')}/__init__.py" in self.names
        parts = module.split(".")
        base = parts[: len(parts) - level + package]
        rest = target[level:]
        return ".".join(base + ([rest] if rest else []))

    def is_module(self, module: str) -> bool:
        base = module.replace(".", "/")
        return self.tree(module) is not None or any(
            n.startswith(base + ".") and n.endswith(".so") for n in self.names
        )

    def find(self, module: str, name: str, depth: int = 0) -> Found | None:
        """``name`` as ``module`` defines, imports or re-exports it (None: not there)."""
        if self.is_module(f"{module}.{name}"):
            return Found("module", f"{module}.{name}")
        tree = self.tree(module)
        if tree is None or depth > 8:
            return None
        for node in _module_level(tree.body):
            found = self._binding(module, node, name, depth)
            if found is not None:
                return found
        target = _lazy_attrs(tree).get(name)
        if target is not None:
            rel, _, attr = target.partition(":")
            return self.find(self.absolute(module, rel), attr, depth + 1)
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            return Found("dynamic", module)
        return None

    def _binding(self, module: str, node: ast.AST, name: str, depth: int) -> Found | None:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                return Found(
                    "class" if isinstance(node, ast.ClassDef) else "function", module, node
                )
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = self.absolute(module, "." * node.level + (node.module or ""))
                    if not source.startswith("vllm"):
                        return Found("value", source)
                    return self.find(source, alias.name, depth + 1) or Found("value", source)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    return Found("module", alias.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return self._value(module, node.value, depth)
        return None

    def _value(self, module: str, value: ast.AST | None, depth: int) -> Found:
        """An assigned value: ``X = SomeClass(...)`` is an instance of that class."""
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            cls = self.find(module, value.func.id, depth + 1)
            if cls is not None and cls.kind == "class":
                return Found("instance", module, instance_of=(cls.module, cls.node.name))
        return Found("value", module, value)

    def member(self, module: str, cls_name: str, attr: str) -> ast.AST | bool | None:
        """The class's member ``attr`` (its def, True for a data attribute, None: absent,
        False: a base class outside vLLM might define it)."""
        cls = self.find(module, cls_name)
        if cls is None or cls.kind != "class":
            return False
        return self._member(cls, attr, set())

    def _member(self, cls: Found, attr: str, seen: set[int]) -> ast.AST | bool | None:
        node = cls.node
        assert isinstance(node, ast.ClassDef)
        if id(node) in seen:
            return None
        seen.add(id(node))
        own = _class_members(node)
        if attr in own:
            return own[attr]
        unknown = False
        for base in node.bases:
            name = _base_name(base)
            if name is None or name in ("object", "ABC", "Generic", "Protocol"):
                continue
            found = self.find(cls.module, name)
            if found is None or found.kind != "class":
                unknown = True
                continue
            result = self._member(found, attr, seen)
            if result is None:
                continue
            return result
        return False if unknown else None


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements bound at import time, including those under ``if`` / ``try`` / ``with``."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            yield from _module_level(node.body)
            yield from _module_level(getattr(node, "orelse", []))
            for handler in getattr(node, "handlers", []):
                yield from _module_level(handler.body)


def _lazy_attrs(tree: ast.Module) -> dict[str, str]:
    """``MODULE_ATTRS = {"LLM": ".entrypoints.llm:LLM", ...}`` (vLLM's lazy re-exports)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if names == ["MODULE_ATTRS"]:
                return {
                    k.value: v.value
                    for k, v in zip(node.value.keys, node.value.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                }
    return {}


def _class_members(node: ast.ClassDef) -> dict[str, ast.AST | bool]:
    members: dict[str, ast.AST | bool] = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            if not any(_base_name(d) == "overload" for d in item.decorator_list):
                members[item.name] = item
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.setdefault(item.target.id, True)
        elif isinstance(item, ast.Assign):
            for t in item.targets:
                if isinstance(t, ast.Name):
                    members.setdefault(t.id, True)
    for sub in ast.walk(node):
        target = sub.target if isinstance(sub, ast.AnnAssign) else None
        targets = sub.targets if isinstance(sub, ast.Assign) else [target] if target else []
        for t in targets:
            if isinstance(t, ast.Attribute) and _is_self(t.value):
                members.setdefault(t.attr, True)
    return members


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _base_name(expr: ast.AST) -> str | None:
    if isinstance(expr, ast.Subscript):
        expr = expr.value
    if isinstance(expr, ast.Call):
        expr = expr.func
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


# --- our side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """The shape of one call: how many positional arguments, which keywords."""

    positional: int
    keywords: tuple[str, ...]
    star: bool  # *args or **kwargs present: the counts are lower bounds

    @classmethod
    def of(cls, node: ast.Call) -> Call:
        star = any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        )
        named = tuple(k.arg for k in node.keywords if k.arg is not None)
        return cls(sum(not isinstance(a, ast.Starred) for a in node.args), named, star)


@dataclass(frozen=True)
class Use:
    """One thing of vLLM's that a line of ours needs."""

    where: str  # path:line
    module: str
    name: str | None = None  # a symbol of the module
    member: str | None = None  # a member of that symbol (a class)
    call: Call | None = None
    optional: bool = False  # under ``try: ... except ImportError``

    def describe(self) -> str:
        what = self.module + (f".{self.name}" if self.name else "")
        return what + (f".{self.member}" if self.member else "")


@dataclass
class _Scope:
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, symbol)
    types: dict[str, tuple[str, str]] = field(default_factory=dict)  # local -> (module, class)
    vllm_bases: tuple[tuple[str, str], ...] = ()  # the enclosing class's vLLM bases
    own: frozenset[str] = frozenset()  # the enclosing class's own members


class _Collector(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module):
        self.path = path
        self.tree = tree
        self.uses: list[Use] = []
        self.optional_depth = 0
        self.scope = _Scope(imports=_vllm_imports(tree))

    def at(self, node: ast.AST) -> str:
        return f"{self.path}:{node.lineno}"

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h) for h in node.handlers)
        self.optional_depth += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.optional_depth -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "vllm":
                self.uses.append(Use(self.at(node), alias.name, optional=self.optional_depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not (node.module or "").startswith("vllm"):
            return
        for alias in node.names:
            self.uses.append(
                Use(self.at(node), node.module, alias.name, optional=self.optional_depth > 0)
            )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = tuple(t for b in node.bases if (t := self.type_of(b, as_class=True)) is not None)
        outer = self.scope
        self.scope = _Scope(
            outer.imports, dict(outer.types), bases, frozenset(_class_members(node))
        )
        self.generic_visit(node)
        self.scope = outer

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = self.scope
        self.scope = _Scope(outer.imports, dict(outer.types), outer.vllm_bases, outer.own)
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
            typed = self.annotation_type(arg.annotation)
            if typed is not None:
                self.scope.types[arg.arg] = typed
        self.generic_visit(node)
        self.scope = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        typed = self.type_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and typed is not None:
                self.scope.types[target.id] = typed

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.scope.imports:
            module, name = self.scope.imports[func.id]
            self.uses.append(Use(self.at(node), module, name, call=Call.of(node)))
        elif isinstance(func, ast.Attribute):
            owner = self.receiver(func.value)
            if owner is not None:
                self.uses.append(Use(self.at(node), *owner, func.attr, Call.of(node)))
            for arg in (*node.args, *(k.value for k in node.keywords)):
                self.visit(arg)
            self.visit_receiver(func.value)
            return
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = self.receiver(node.value)
        if owner is not None and isinstance(node.ctx, ast.Load):
            self.uses.append(Use(self.at(node), *owner, node.attr))
        self.visit_receiver(node.value)

    def visit_receiver(self, node: ast.AST) -> None:
        if not _is_super(node):  # super() itself needs nothing
            self.visit(node)

    def receiver(self, node: ast.AST) -> tuple[str, str] | None:
        """The vLLM class whose member ``node.<attr>`` is, where we know it."""
        if _is_super(node) and self.scope.vllm_bases:
            return self.scope.vllm_bases[0]
        if isinstance(node, ast.Name) and node.id == "self" and self.scope.vllm_bases:
            return None  # own members are ours; inherited ones are read via super()
        return self.type_of(node, as_class=True)

    def type_of(self, node: ast.AST, as_class: bool = False) -> tuple[str, str] | None:
        if isinstance(node, ast.Name):
            if node.id in self.scope.types:
                return self.scope.types[node.id]
            if as_class and node.id in self.scope.imports:
                module, name = self.scope.imports[node.id]
                return (module, name) if name else None
            return NAMED_RECEIVERS.get(node.id)
        if isinstance(node, ast.Attribute):
            return NAMED_RECEIVERS.get(node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            imported = self.scope.imports.get(node.func.id)
            if imported and imported[1] and imported[1][:1].isupper():
                return imported[0], imported[1]
        return None

    def annotation_type(self, annotation: ast.AST | None) -> tuple[str, str] | None:
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        if isinstance(annotation, ast.Name) and annotation.id in self.scope.imports:
            module, name = self.scope.imports[annotation.id]
            return (module, name) if name else None
        return None


def _is_super(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(_base_name(k) in IMPORT_ERRORS for k in kinds if k is not None)


def _vllm_imports(tree: ast.Module) -> dict[str, tuple[str, str | None]]:
    """Every vLLM name the file binds anywhere (module level, functions, TYPE_CHECKING)."""
    names: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vllm"):
            if not node.level:
                for alias in node.names:
                    names[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vllm" and alias.asname:
                    names[alias.asname] = (alias.name, None)
    return names


def _optional_imports(tree: ast.Module) -> set[tuple[str, str | None]]:
    """Symbols imported under ``try: ... except ImportError`` (a release may lack them, and
    whatever uses them is then skipped by our code)."""
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.ImportFrom) and sub.module:
                        found.update((sub.module, a.name) for a in sub.names)
    return found


def our_uses(root: Path = ROOT) -> list[Use]:
    """Every vLLM use in our sources, plus the candidate homes of each moved symbol."""
    uses: list[Use] = []
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            collector = _Collector(str(path.relative_to(root)), ast.parse(path.read_text()))
            collector.visit(collector.tree)
            optional = _optional_imports(collector.tree)
            uses.extend(
                replace(u, optional=True) if (u.module, u.name) in optional else u
                for u in collector.uses
            )
    return uses


def moved_uses(root: Path = ROOT) -> list[tuple[str, tuple[int, int] | None, list[Use]]]:
    """Each moved symbol, the release before which it may be absent, and its candidate homes
    (at least one must exist in a release), each named by its line in ``compat.py``."""
    sys.path.insert(0, str(root))
    try:
        from screenspot_eval.backends.vllm import compat
    except ImportError:  # before the compatibility module existed
        return []
    path = Path(compat.__file__)
    lines = path.read_text().splitlines()
    where = path.relative_to(root)

    def line(home: compat.Home) -> int:
        return next(i for i, text in enumerate(lines, 1) if f'"{home.module}"' in text)

    return [
        (
            name,
            moved.absent_before,
            [Use(f"{where}:{line(h)}", h.module, h.symbol) for h in moved.homes],
        )
        for name, moved in compat.MOVED.items()
    ]


# --- the check --------------------------------------------------------------------------------


def check_use(release: Release, use: Use) -> str | None:
    """Why ``use`` fails in ``release`` (None: it holds, or cannot be known statically)."""
    if use.name is None:
        return None if release.is_module(use.module) else "no such module"
    if not release.is_module(use.module):
        return "no such module"
    found = release.find(use.module, use.name)
    if found is None:
        return f"{use.module} has no {use.name}"
    if use.member is not None:
        return _check_member(release, found, use)
    if use.call is not None and found.kind in ("class", "function"):
        return _check_call(_callable(release, found), use.call, bound=found.kind == "class")
    return None


def _check_member(release: Release, found: Found, use: Use) -> str | None:
    if found.kind == "instance":
        module, cls = found.instance_of
    elif found.kind == "class":
        module, cls = found.module, found.node.name
    else:
        return None
    member = release.member(module, cls, use.member)
    if member is None:
        return f"{cls} has no {use.member}"
    if use.call is not None and isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
        static = any(_base_name(d) == "staticmethod" for d in member.decorator_list)
        return _check_call(member, use.call, bound=not static)
    return None


def _callable(release: Release, found: Found) -> ast.AST | None:
    """The function a call runs: the function itself or the class's ``__init__``."""
    if found.kind == "function":
        return found.node
    init = release._member(found, "__init__", set())
    return init if isinstance(init, ast.FunctionDef) else _fields_init(release, found)


def _fields_init(release: Release, found: Found) -> ast.FunctionDef | None:
    """A dataclass-like class (msgspec / dataclass / pydantic): its annotated fields are
    keyword parameters."""
    node = found.node
    assert isinstance(node, ast.ClassDef)
    fields = [
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        and "ClassVar" not in ast.unparse(item.annotation)
    ]  # fmt: skip
    if not fields:
        return None
    args = ast.arguments(
        posonlyargs=[], args=[ast.arg("self")] + [ast.arg(f) for f in fields],
        kwonlyargs=[], kw_defaults=[], defaults=[ast.Constant(None)] * len(fields),
    )  # fmt: skip
    return ast.FunctionDef(name="__init__", args=args, body=[], decorator_list=[])


def _check_call(func: ast.AST | None, call: Call, bound: bool) -> str | None:
    if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    args = func.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)][1 if bound else 0 :]
    named = {a.arg for a in (*args.args, *args.kwonlyargs)}
    signature = f"{func.name}({ast.unparse(args)})"
    if call.positional > len(positional) and args.vararg is None:
        return f"{call.positional} positional arguments, {signature} takes {len(positional)}"
    unknown = [k for k in call.keywords if k not in named]
    if unknown and args.kwarg is None:
        return f"keyword {', '.join(unknown)} not in {signature}"
    if not call.star:
        required = _required(args, bound)
        given = set(positional[: call.positional]) | set(call.keywords)
        missing = [r for r in required if r not in given]
        if missing:
            return f"{', '.join(missing)} required by {signature}"
    return None


def _required(args: ast.arguments, bound: bool) -> list[str]:
    positional = [*args.posonlyargs, *args.args]
    without_default = positional[: len(positional) - len(args.defaults)]
    names = [a.arg for a in without_default][1 if bound else 0 :]
    names += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    return names


def check_release(version: str, root: Path = ROOT) -> list[str]:
    """Every failure of our uses against the released ``version``: ``file:line: what: why``."""
    return check(Release(wheel(version)), root)


def check(release: Release, root: Path = ROOT) -> list[str]:
    problems = []
    for use in our_uses(root):
        why = check_use(release, use)
        if why is not None and not use.optional:
            problems.append(f"{use.where}: {use.describe()}: {why}")
    for name, absent_before, spots in moved_uses(root):
        if absent_before and _version(release.version)[:2] < absent_before:
            continue
        if all(check_use(release, spot) for spot in spots):
            homes = ", ".join(s.describe() for s in spots)
            problems.append(f"{spots[0].where}: {name}: in none of {homes}")
    return problems


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def main(argv: list[str]) -> int:
    failed = 0
    for version in argv or ["0.34.0"]:
        problems = check_release(version)
        print(f"vLLM {version}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for line in problems:
            print(f"  {line}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
