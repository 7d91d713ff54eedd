"""What collection does to the suites' cases, one job per plugin object, each registered only when
its feature is on, as pytest registers its own (the cache provider, the terminal reporter).

- `ProfileSelection`, always: the suites in `RUN_ORDER`, those the profile leaves out only when
  their file is named, cases that share a loaded model in one xdist group.
- `ShardPart`, with --shard: the shard's part of the cases, whole groups kept together.
- `IsolationMarks`, when cases run in children: no second time limit in the parent, and the
  concurrency suite's split placement skipped where it cannot run.
- `ResumedCases`, with --resume: the killed run's finished cases left out.

All run before other plugins' (xdist reads the groups); among themselves pluggy calls the last
registered first, so `register` registers them in reverse of the order they must run in (the
shards are cut before a resumed run's finished cases leave, or a resumed shard would be another
part).
"""

from __future__ import annotations

import pytest

from bench.harness.selection import RUN_ORDER, case_group, isolated, suite_of
from bench.harness.shard import assign, parse_shard


def register(config: pytest.Config, session) -> None:
    manager = config.pluginmanager
    if session.resume_dir is not None:
        manager.register(ResumedCases(session), "bench-resumed-cases")
    if session.isolation != "off":
        manager.register(IsolationMarks(session), "bench-isolation-marks")
    if config.getoption("--shard"):
        manager.register(ShardPart(config.getoption("--shard")), "bench-shard-part")
    manager.register(ProfileSelection(session), "bench-profile-selection")


def _keep(config: pytest.Config, items: list[pytest.Item], keep) -> None:
    gone = [item for item in items if not keep(item)]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if keep(item)]


class ProfileSelection:
    def __init__(self, session) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from bench.harness.selection import left_out_note, outside_profile

        order = {name: i for i, name in enumerate(RUN_ORDER)}
        items.sort(key=lambda item: order.get(suite_of(item) or "", -1))
        profile = self.session.profile
        left_out = outside_profile(items, profile.suites, suite_of, config.args, config.invocation_params.dir)
        if left_out:
            gone = set(left_out)
            _keep(config, items, lambda item: item not in gone)
            self.session.left_out = left_out_note(profile.name, left_out, suite_of)
        if getattr(config, "workerinput", None):
            for item in items:
                if group := case_group(item):
                    item.add_marker(pytest.mark.xdist_group(group))
        self.session.collected_suites = {suite for item in items if (suite := suite_of(item))}


class ShardPart:
    def __init__(self, spec: str) -> None:
        self.index, self.count = parse_shard(spec)

    @pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        groups = {item: case_group(item) or item.nodeid for item in items}
        shard_of = assign(list(groups.values()), self.count)
        _keep(config, items, lambda item: shard_of[groups[item]] == self.index)


class IsolationMarks:
    def __init__(self, session) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from bench.harness.concurrency import split_unavailable

        cannot_split = split_unavailable(self.session.run_gpus)
        for item in items:  # the time limit is the child's to enforce; no second timer in the parent
            if isolated(item):
                item.add_marker(pytest.mark.timeout(0))
            params = getattr(item, "callspec", None)
            if cannot_split and params is not None and params.params.get("placement") == "split":
                item.add_marker(pytest.mark.skip(reason=cannot_split))  # known now: no process started for it


class ResumedCases:
    def __init__(self, session) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        self.session.start()
        _keep(config, items, lambda item: item.nodeid not in self.session.finished)
