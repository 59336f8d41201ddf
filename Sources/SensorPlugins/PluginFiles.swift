import Platform

// Platform's file helpers as plugin problems: a failure is a `read_failed` error naming the path
// and the errno text (`read_failed: /sys/class/thermal/thermal_zone1/temp: Is a directory`).

extension PluginError {
    /// `read_failed` with the system error's text.
    public init(readFailed error: SystemError) {
        self.init("read_failed", error.description)
    }
}

/// A small text file (sysfs, procfs) with surrounding whitespace removed.
public func readSensorText(_ path: String) throws(PluginError) -> String {
    do { return try readSmallTextFile(path) } catch { throw PluginError(readFailed: error) }
}

/// Names in a directory (without `.` and `..`), sorted.
public func listSensorDirectory(_ path: String) throws(PluginError) -> [String] {
    do { return try listDirectory(path) } catch { throw PluginError(readFailed: error) }
}
