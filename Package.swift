// swift-tools-version: 6.0
// bitnetd — a low-footprint daemon that runs ternary (BitNet b1.58) language models on edge devices
// and answers MQTT events with decisions. Module layout and import rules: DESIGN.md §3.
//
// Must build with Swift 6.0.3 (Debian trixie / Raspberry Pi OS) as well as newer toolchains, which
// limits Swift dependencies to swift-argument-parser; everything else is the toolchain (Glibc,
// Dispatch, Synchronization) and system C libraries (libmosquitto, libyaml).
import PackageDescription

/// The kernels are always compiled optimised: a debug build of the C kernels is ~20x slower and
/// would make `swift test` (debug) crawl through the model tests. ISA-specific code uses
/// per-function `target(...)` attributes, so no `-march` flag is needed (platform notes).
let kernelCSettings: [CSetting] = [.unsafeFlags(["-O2", "-fno-strict-aliasing"])]

let package = Package(
    name: "bitnetd",
    products: [
        .executable(name: "bitnetd", targets: ["bitnetd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: C
        .target(
            name: "CTernaryKernels",
            cSettings: kernelCSettings,
            linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread")]
        ),
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // libcurl for `bitnetd pull` (HTTPS downloads), through a non-variadic shim; linked into the
        // executable only.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("curl")]),
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),

        // MARK: Foundations (toolchain modules only)
        .target(name: "Platform"),
        .target(name: "JSONValue"),
        // JSON Schema → a byte-level recognizer for constrained generation (`task: extract`).
        .target(name: "JSONSchema", dependencies: ["JSONValue"]),
        .target(name: "ConfigTree"),
        .target(name: "Services", dependencies: ["Platform"]),

        // MARK: Engine
        .target(name: "GGUF"),
        .target(name: "BitNet", dependencies: ["GGUF", "CTernaryKernels", "Platform", "JSONSchema"]),
        // Model generation for `bitnetd dev`/`bench` and the tests (never linked into the daemon path).
        .target(name: "BitNetTools", dependencies: ["BitNet", "GGUF", "CTernaryKernels"]),

        // MARK: Daemon
        .target(name: "Mosquitto", dependencies: ["CMosquitto", "Platform"]),
        .target(name: "DaemonConfig", dependencies: ["CYAML", "ConfigTree", "Platform", "JSONSchema", "JSONValue"]),
        .target(name: "SensorPlugins", dependencies: ["ConfigTree", "Platform", "JSONValue"]),
        .target(
            name: "Daemon",
            dependencies: ["Platform", "JSONValue", "ConfigTree", "Services", "DaemonConfig", "Mosquitto", "SensorPlugins",
                           "BuiltinPlugins", "BitNet"]
        ),
        .executableTarget(
            name: "bitnetd",
            dependencies: [
                "Daemon", "BitNet", "BitNetTools", "GGUF", "Platform", "JSONValue", "JSONSchema", "ConfigTree", "CCurl", "DaemonConfig", "SensorPlugins", "Mosquitto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests
        // One support home for every test target: temporary folders, polling, byte and GGUF
        // fixtures, plugin helpers, and the process fixtures (a broker per test, the built binary).
        .target(name: "TestKit", dependencies: ["GGUF", "BitNet", "BitNetTools", "ConfigTree", "DaemonConfig",
                                                "SensorPlugins", "Platform", "Mosquitto"], path: "Tests/TestKit"),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "TestKit"]),
        .testTarget(name: "KernelTests", dependencies: ["CTernaryKernels"]),
        .testTarget(name: "BitNetTests", dependencies: ["BitNet", "BitNetTools", "GGUF", "TestKit", "CTernaryKernels"]),
        .testTarget(name: "ConfigTreeTests", dependencies: ["ConfigTree"]),
        .testTarget(name: "ServicesTests", dependencies: ["Services", "Platform", "TestKit"]),
        .testTarget(name: "JSONValueTests", dependencies: ["JSONValue"]),
        .testTarget(name: "JSONSchemaTests", dependencies: ["JSONSchema", "JSONValue"]),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "Platform", "TestKit"]),
        .testTarget(name: "DaemonConfigTests", dependencies: ["JSONSchema", "DaemonConfig", "ConfigTree", "TestKit"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Platform", "JSONValue", "ConfigTree", "DaemonConfig", "Mosquitto",
                                                        "SensorPlugins", "BitNet", "TestKit"]),
        // The built `bitnetd` as a process: end to end with a real broker, signals, systemd, CLI.
        .testTarget(name: "IntegrationTests", dependencies: ["Mosquitto", "Platform", "GGUF", "BitNet", "TestKit"]),
    ]
)

// MARK: Sensor plugins (issue 6): one folder per built-in under plugins/<id>/ with its own target and
// test target (STYLE.md guideline 9); plugins/all is the registry, the one target that sees them all.
let sensorPlugins: [(id: String, module: String)] = [
    ("exec", "PluginExec"),
    ("file-tail", "PluginFileTail"),
    ("linux-thermal", "PluginLinuxThermal"),
    ("system", "PluginSystem"),
]
for p in sensorPlugins {
    package.targets.append(.target(name: p.module, dependencies: ["SensorPlugins", "ConfigTree", "Platform", "JSONValue"], path: "plugins/\(p.id)/Sources"))
    package.targets.append(.testTarget(
        name: p.module + "Tests", dependencies: [.target(name: p.module), "SensorPlugins", "ConfigTree", "Platform", "JSONValue", "TestKit"],
        path: "plugins/\(p.id)/Tests", exclude: ["Fixtures"]))
}
package.targets += [
    .target(name: "BuiltinPlugins", dependencies: ["SensorPlugins"] + sensorPlugins.map { .target(name: $0.module) },
            path: "plugins/all"),
    .testTarget(name: "SensorPluginsTests", dependencies: ["SensorPlugins", "ConfigTree", "Platform", "JSONValue", "BuiltinPlugins",
                                                           "TestKit", "DaemonConfig"]),
]
