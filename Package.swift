// swift-tools-version: 6.1
import PackageDescription

// Test hooks (crash points, injected faults, the synthetic diagnoser) are compiled into debug builds only,
// which the tests run; release and device builds never read their environment variables.
let testHooks: [SwiftSetting] = [.define("AADS_TEST_HOOKS", .when(configuration: .debug))]

let package = Package(
    name: "AADSEdge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "aads-edge", targets: ["aads-edge"]),
        .executable(name: "fuzz-decode", targets: ["fuzz-decode"]),
        .executable(name: "fuzz-onnx", targets: ["fuzz-onnx"]),
        .executable(name: "fuzz-bundle", targets: ["fuzz-bundle"]),
        .executable(name: "fuzz-config", targets: ["fuzz-config"]),
        .executable(name: "fuzz-state", targets: ["fuzz-state"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        // Layer 0: C shims and shared plumbing.
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CGPIOD", pkgConfig: "libgpiod", providers: [.apt(["libgpiod-dev"])]),
        // Optimised in debug builds too: the tests run whole models and golden sets through these kernels.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        .target(name: "CLibJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        .systemLibrary(name: "CMalloc"),
        .target(name: "AADSCore", dependencies: ["CMalloc"], swiftSettings: testHooks),

        // Layer 1: image, inference, slots.
        .target(name: "AADSImage", dependencies: ["CTurboJPEG", "CLibJPEG", "AADSCore"]),
        .target(
            name: "AADSInference",
            dependencies: [
                "CKernels", "AADSCore",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .target(
            name: "AADSSlots",
            dependencies: [
                "AADSCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: testHooks),

        // Layer 2: diagnosis.
        .target(name: "AADSDiagnosis", dependencies: ["AADSImage", "AADSInference", "AADSCore"]),

        // Layer 3: health checks and the update controller.
        .target(name: "AADSHealth", dependencies: ["AADSDiagnosis", "AADSSlots", "AADSCore"]),

        // Layer 4: the field service.
        .target(
            name: "AADSDevice",
            dependencies: [
                "AADSHealth", "AADSDiagnosis", "AADSImage", "AADSSlots", "CGPIOD", "AADSCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: testHooks),

        // Layer 5: the command-line tool.
        .executableTarget(
            name: "aads-edge",
            dependencies: [
                "AADSImage", "AADSInference", "AADSSlots", "AADSDiagnosis", "AADSHealth", "AADSDevice", "AADSCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: testHooks),

        // Fuzz targets (libFuzzer drivers compiled in only with -DFUZZING).
        .executableTarget(name: "fuzz-decode", dependencies: ["AADSImage"], path: "Fuzz/fuzz-decode"),
        .executableTarget(name: "fuzz-onnx", dependencies: ["AADSInference"], path: "Fuzz/fuzz-onnx"),
        .executableTarget(name: "fuzz-bundle", dependencies: ["AADSSlots"], path: "Fuzz/fuzz-bundle"),
        .executableTarget(
            name: "fuzz-config", dependencies: ["AADSDevice", "AADSHealth", "AADSCore"], path: "Fuzz/fuzz-config"),
        .executableTarget(name: "fuzz-state", dependencies: ["AADSSlots", "AADSCore"], path: "Fuzz/fuzz-state"),

        // Test support: what the test targets share (fixture paths, the aads-edge binary under test). Only test
        // targets depend on it; no product links it.
        .target(name: "AADSTestSupport"),

        .testTarget(name: "AADSCoreTests", dependencies: ["AADSCore"]),
        .testTarget(name: "AADSImageTests", dependencies: ["AADSImage", "AADSTestSupport"]),
        .testTarget(
            name: "AADSInferenceTests",
            dependencies: ["AADSInference", "AADSImage", "CKernels", "AADSCore", "AADSTestSupport"]),
        .testTarget(name: "AADSSlotsTests", dependencies: ["AADSSlots", "AADSCore", "AADSTestSupport"]),
        .testTarget(
            name: "AADSDiagnosisTests",
            dependencies: ["AADSDiagnosis", "AADSInference", "AADSImage", "AADSTestSupport"]),
        .testTarget(name: "AADSHealthTests", dependencies: ["AADSHealth", "AADSTestSupport"]),
        .testTarget(
            name: "AADSDeviceTests",
            dependencies: [
                "AADSDevice", "AADSDiagnosis", "AADSHealth", "AADSSlots", "AADSCore", "AADSTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
