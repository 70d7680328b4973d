from __future__ import annotations

import types

import nbllm


def test_all_is_sorted_and_complete() -> None:
    assert nbllm.__all__ == sorted(nbllm.__all__)
    for name in nbllm.__all__:
        assert hasattr(nbllm, name), name
    public = {
        name
        for name in dir(nbllm)
        if not name.startswith("_") and not isinstance(getattr(nbllm, name), types.ModuleType)
    }
    assert public - {"annotations", "Any"} <= set(nbllm.__all__)


def test_every_error_is_an_nbllm_error() -> None:
    errors = [getattr(nbllm, n) for n in nbllm.__all__ if n.endswith("Error")]
    assert len(errors) >= 20
    for error in errors:
        assert issubclass(error, nbllm.NbllmError), error
