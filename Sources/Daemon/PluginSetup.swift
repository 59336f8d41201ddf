import BuiltinPlugins
import ConfigTree
import DaemonConfig
import SensorPlugins

/// Builds the configured sensor plugins from the built-in registry (DESIGN.md §6).
public enum PluginSetup {
    /// The plugins of `config.plugins`, or every problem as a `ConfigError`
    /// (`FILE:LINE:COL: plugins[i].key: message`), for `run`, SIGHUP and `check-config`.
    /// Also checks that the configured limits and these plugins fit `limits.memory_budget_mb`
    /// (`MemoryBudget`): the last check before a configuration may run.
    public static func build(_ config: BitnetdConfig) -> Result<[any SensorPlugin], ConfigErrors> {
        let plugins: [any SensorPlugin]
        do throws(ConfigErrors) {
            plugins = try BuiltinPlugins.registry.makePlugins(config.plugins.map(\.node))
        } catch {
            return .failure(error)
        }
        if let problem = MemoryBudget(config: config, plugins: plugins).problem {
            return .failure(ConfigErrors([ConfigError(config.limits.memoryBudgetMark, "limits.memory_budget_mb", problem)]))
        }
        return .success(plugins)
    }
}
