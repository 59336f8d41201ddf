import BuiltinPlugins
import ConfigTree
import DaemonConfig
import SensorPlugins

/// Builds the configured sensor plugins from the built-in registry (DESIGN.md §6).
public enum PluginSetup {
    /// The plugins of `config.plugins`, or every problem as a `ConfigError`
    /// (`FILE:LINE:COL: plugins[i].key: message`), for `run`, SIGHUP and `check-config`.
    public static func build(_ config: BitnetdConfig) -> Result<[any SensorPlugin], ConfigErrors> {
        do throws(ConfigErrors) {
            return .success(try BuiltinPlugins.registry.makePlugins(config.plugins.map(\.node)))
        } catch {
            return .failure(error)
        }
    }
}
