import PluginExec
import PluginFileTail
import PluginLinuxThermal
import PluginSystem
import SensorPlugins

/// The built-in plugins: the one explicit list of ids and their factories (STYLE.md guideline 9).
///
/// Like Telegraf's `plugins/inputs/all`, this target exists only to depend on every plugin target,
/// which `SensorPlugins` itself cannot. Adding a plugin: a folder `plugins/<id>/` (README.md,
/// sample.yaml, Sources/, Tests/), its two targets in Package.swift, and one line here; the
/// conventions test checks the three agree.
public enum BuiltinPlugins {
    public static let registry = PluginRegistry([
        ExecPlugin.factory,
        FileTailPlugin.factory,
        LinuxThermalPlugin.factory,
        SystemPlugin.factory,
    ])
}
