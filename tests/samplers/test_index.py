"""The sampler index :mod:`gmzoo.samplers`: every sampler in its table and in its ``__all__`` has
the zoo's one signature ``sampler(fn, key, x_init, <process, grid>, *, settings)``, every row
names a function that exists in the module the row names, and every library sampler is
re-exported. Read from ``inspect.signature`` and the module docstring, so a sampler added with
the old orders (``euler_maruyama(sde, score_fn, key, ...)``, a keyless ODE, a positional step
count) or a stale row fails here."""

import importlib
import inspect
import re

import pytest

import gmzoo.samplers as index

HELPERS = {"time_grid"}  # re-exported beside the samplers, not a sampler
MODEL = {"eps_fn", "score_fn", "energy_fn", "params"}  # argument 1: the model
START = {"x_T", "x0", "v0", "n"}  # argument 3: where the chain starts, or how many to draw
PROCESS = {"schedule", "sde", "ts"}  # the only other arguments that may be positional
P = inspect.Parameter


def table(doc: str) -> dict[str, str]:
    """``{sampler: module}`` from the docstring's rows ``| `name` | ... | `module` | ... |``."""
    rows = {}
    for line in doc.splitlines():
        if re.match(r"\|\s*`\w+`\s*\|", line):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            assert len(cells) == 6, f"a table row needs 6 cells: {line}"
            rows[cells[0]] = cells[4]
    return rows


ROWS = table(index.__doc__)


def resolve(name: str):
    return getattr(importlib.import_module(ROWS[name]), name)


def signature_problems(fn) -> list[str]:
    """What keeps ``fn`` from the shared signature (empty if it has it)."""
    params = list(inspect.signature(fn).parameters.values())
    first = [p.name for p in params[:3]]
    problems = []
    if len(first) < 3 or first[0] not in MODEL or first[1] != "key" or first[2] not in START:
        problems.append(f"starts with {first}, not (one of {sorted(MODEL)}, key, "
                        f"one of {sorted(START)})")
    for p in params[:3]:
        if p.kind is not P.POSITIONAL_OR_KEYWORD:
            problems.append(f"{p.name} is {p.kind.description}, not positional-or-keyword")
    for p in params[3:]:
        if p.kind is P.POSITIONAL_OR_KEYWORD and p.name not in PROCESS:
            problems.append(f"{p.name} is positional but not a process or grid {sorted(PROCESS)}")
        elif p.kind not in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            problems.append(f"{p.name} is {p.kind.description}")
    return problems


def test_the_table_lists_every_sampler_of_the_zoo():
    assert set(ROWS) >= {"ddpm_ancestral", "ddim", "euler_maruyama", "reverse_diffusion",
                         "pc_sampler", "ode_sample", "sample_vae", "sample_hierarchical_vae",
                         "ula", "tempered_langevin", "gibbs_sample"}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_row_names_a_sampler_that_exists_there(name):
    assert callable(resolve(name)), f"{ROWS[name]}.{name} is not a function"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_sampler_has_the_shared_signature(name):
    assert signature_problems(resolve(name)) == []


def test_all_holds_the_library_samplers_and_they_are_the_tables():
    samplers = set(index.__all__) - HELPERS
    library = {n for n, module in ROWS.items() if not module.startswith("gmzoo.families")}
    assert samplers == library
    assert len(index.__all__) == len(set(index.__all__))
    for name in index.__all__:
        assert hasattr(index, name), name
    for name in samplers:
        assert getattr(index, name) is resolve(name), name
        assert signature_problems(getattr(index, name)) == [], name


def test_the_check_rejects_the_old_orders():
    """The signature check can fail: the solvers' and the RBM's orders before issue 10."""
    def euler_maruyama(sde, score_fn, key, x_T, ts, *, return_trajectory=False): ...
    def ode_sample(sde, score_fn, x_T, ts, *, method="rk4"): ...
    def gibbs_sample(params, key, v0, num_steps): ...
    def by_settings(eps_fn, key, x_T, *args, **settings): ...

    old = signature_problems(euler_maruyama)
    assert any("starts with ['sde', 'score_fn', 'key']" in p for p in old), old
    assert signature_problems(ode_sample)
    assert signature_problems(gibbs_sample) == [
        "num_steps is positional but not a process or grid ['schedule', 'sde', 'ts']"]
    assert len(signature_problems(by_settings)) == 2
    assert table("| `f` | a | b | c | `gmzoo.samplers` | d |") == {"f": "gmzoo.samplers"}
