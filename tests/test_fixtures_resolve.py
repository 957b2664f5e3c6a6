"""Every collected test's fixtures exist, including tests that this machine skips (the CUDA
tests on a CPU-only machine never reach set-up, where pytest would report a missing fixture)."""

from __future__ import annotations


def test_every_collected_test_requests_only_defined_fixtures(request):
    dangling = []
    for item in request.session.items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        params = set(getattr(getattr(item, "callspec", None), "params", {}))
        for name in info.names_closure:
            if name not in info.name2fixturedefs and name not in params and name != "request":
                dangling.append(f"{item.nodeid}: {name}")
    assert not dangling, "tests request undefined fixtures:\n" + "\n".join(dangling)
