"""``forward`` split into stages: compiled in parallel, each small enough for LLVM.

LLVM's function passes over one jitted function grow faster than its length (SROA and
MemCpyOpt over the array-struct allocas of every arena view): DenseNet-121's ~1400-line
``forward`` spent 50 of its 66-87 s of compile time there, serially, after the kernels had
been compiled in parallel.  A schedule with more than :data:`STAGE_CALLS` kernel calls is cut
into stages ``s0, s1, ...`` of at most that many calls; ``forward`` calls them one after the
other by symbol (extern.py), as it calls kernels, and the stages compile in worker processes
like the kernels do.

A stage takes ``forward``'s arguments that it reads (inputs, ``arena``, ``offs``,
``scratch``, the weights) and ``nt``, the caller's thread count.  The locals of ``forward``
are views of the arena, of the scratch or of the inputs (``v3 = arena[...].reshape(...)``),
so a stage that reads a local an earlier stage defined defines it again, by the same line,
rather than receiving it: nothing is passed between stages but the arena's contents.  The
names stay those of the unsplit ``forward``, so the debugger runs the stages' statements as
one flat schedule.
"""

from __future__ import annotations

import re

#: kernel calls per stage: ResNet-18 (about 60 calls) stays one function
STAGE_CALLS = 64
#: rank code of ``offs``, the int64 offsets of the arena's buffers (see kernel_signature)
OFFSETS = -2

_DEF = re.compile(r"^(\w+) = ")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _names(line: str) -> set[str]:
    """The identifiers a line reads (its comment aside)."""
    code = line.split("  # ", 1)[0]
    m = _DEF.match(code)
    return set(_NAME.findall(code[m.end():] if m else code))


def _definitions(body: list[str]) -> dict[str, tuple[int, str]]:
    """name -> (line number, line) of each local the schedule defines."""
    defs: dict[str, tuple[int, str]] = {}
    for i, line in enumerate(body):
        if m := _DEF.match(line):
            defs.setdefault(m.group(1), (i, line))
    return defs


def _prelude(needed: set[str], defs: dict[str, tuple[int, str]], known: set[str]) -> list[str]:
    """The defining lines of ``needed`` and of the names they read, in schedule order,
    except for the names in ``known``."""
    todo, lines = list(needed), {}
    while todo:
        name = todo.pop()
        if name in known or name not in defs or name in lines:
            continue
        lines[name] = defs[name]
        todo.extend(_names(defs[name][1]))
    return [line for _, line in sorted(lines.values())]


def split(body: list[str], params: list[str], ranks: dict[str, int], is_call):
    """Cut the schedule ``body`` (lines of ``forward`` after ``nt = get_threads()``) into
    stages when it makes more than :data:`STAGE_CALLS` kernel calls (``is_call(line)``).

    Returns ``(stages, head)``: ``stages`` lists ``(name, parameters, argument ranks,
    lines)``, and ``head`` is what ``forward`` runs in their place (the stage calls); with no
    split, ``stages`` is empty and ``head`` is ``body``. ``ranks`` gives each parameter's
    rank (-1 an integer, :data:`OFFSETS` the offsets)."""
    stage_calls = STAGE_CALLS
    if sum(map(is_call, body)) <= stage_calls:
        return [], body
    defs = _definitions(body)
    units = []   # a statement with the indented lines of its block (a loop over batch chunks)
    for line in body:
        if line.startswith(" ") and units:
            units[-1].append(line)
        else:
            units.append([line])
    chunks, current, calls = [], [], 0
    for unit in units:
        made = sum(map(is_call, unit))
        if calls and calls + made > stage_calls:
            chunks.append(current)
            current, calls = [], 0
        current.extend(unit)
        calls += made
    chunks.append(current)
    stages, head = [], []
    outer = [*params, "nt"]
    for k, chunk in enumerate(chunks):
        own = {m.group(1) for line in chunk if (m := _DEF.match(line))}
        read = set().union(*map(_names, chunk))
        lines = _prelude(read - own, defs, set(outer)) + chunk
        used = set().union(*map(_names, lines))
        args = [p for p in outer if p in used]
        name = f"s{k}"
        stages.append((name, args, tuple(ranks[a] for a in args), lines))
        head.append(f"{name}({', '.join(args)})  # stage {k}: {sum(map(is_call, chunk))} "
                    f"kernel calls")
    return stages, head


def prelude_for(names: list[str], body: list[str], params: list[str]) -> list[str]:
    """The lines ``forward`` needs to define ``names`` (its outputs) after the stages ran."""
    return _prelude(set(names), _definitions(body), {*params, "nt"})
