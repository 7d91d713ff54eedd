"""Makes a plain checkout work without installing: registers the plugin unless the installed
package already did through its pytest11 entry point."""

import importlib.metadata

_installed = any(ep.value == "bench.harness.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
if not _installed:
    pytest_plugins = ["bench.harness.plugin"]
