import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

/// With two threads the service decodes the next waiting image while it diagnoses the current one.
@Suite struct DecodeAheadTests {
    /// The first `n` photos of the factory bundle's golden set.
    static func photos(_ n: Int) -> [String] {
        let golden = Fixtures.factoryBundle + "/golden"
        let all = FileManager.default.enumerator(atPath: golden)?.compactMap { $0 as? String } ?? []
        return all.filter { $0.lowercased().hasSuffix(".jpg") }.sorted().prefix(n).map { golden + "/" + $0 }
    }

    /// A service that diagnoses with the factory bundle on two threads, and that diagnoser.
    func makeService(_ dir: TempDir) throws -> (FieldService, PipelineDiagnoser) {
        let diagnoser = try PipelineDiagnoser(
            bundleDirectory: Fixtures.factoryBundle, options: PipelineOptions(threads: 2))
        let service = try AADSDeviceTests.makeService(
            dir, lifecycle: StaticSlotLifecycle(diagnoser: diagnoser), exitWhenIdle: true)
        return (service, diagnoser)
    }

    @Test func resultsEqualDiagnosingEachFileOnItsOwn() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (service, _) = try makeService(dir)
        let photos = Self.photos(12)
        try #require(photos.count == 12)
        var sources: [String: String] = [:]
        for (i, photo) in photos.enumerated() {
            let name = String(format: "img-%02d.jpg", i)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: photo))
            try dropImage(into: service.spool.directory, name: name, bytes: bytes)
            sources[name] = photo
        }
        _ = try dropImage(into: service.spool.directory, name: "img-06-broken.jpg", content: "not a JPEG")
        let summary = try ServiceRunner(service).wait(stop: false)
        #expect(summary.processed == 13)
        #expect(summary.failed == 1)
        #expect(summary.decodedAhead == 12, "every image but the first was decoded ahead")
        let reference = try DiagnosisPipeline(bundleDirectory: Fixtures.factoryBundle)
        let rows = try service.journal.rows()
        #expect(rows.count == 13)
        for row in rows {
            guard let source = sources[row.record.file] else {
                #expect(row.record.decision == .error)
                continue
            }
            let expected = reference.diagnose(path: source)
            #expect(row.record.decision == expected.decision, "\(row.record.file)")
            #expect(row.record.crop == expected.crop, "\(row.record.file)")
            #expect(row.record.disease == expected.disease, "\(row.record.file)")
            #expect(row.record.mahalanobis == expected.mahalanobis, "\(row.record.file)")
        }
    }

    /// A spool file replaced while it was decoded ahead is decoded again from the file that is there.
    @Test func aFileReplacedAfterItsDecodeBeganIsDecodedAgain() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let (service, diagnoser) = try makeService(dir)
        let photos = Self.photos(2)
        try #require(photos.count == 2)
        let spool = service.spool.directory
        let first = try Data(contentsOf: URL(fileURLWithPath: photos[0]))
        let second = try Data(contentsOf: URL(fileURLWithPath: photos[1]))
        let path = try dropImage(into: spool, name: "a.jpg", bytes: first)
        service.decodeAhead("a.jpg", for: diagnoser)
        try dropImage(into: spool, name: "a.jpg", bytes: second)
        let replaced = try Spool.fingerprint(path: path).fileID
        #expect(service.takeDecodedAhead("a.jpg", fileID: replaced, for: diagnoser) == nil)

        service.decodeAhead("a.jpg", for: diagnoser)
        let image = try #require(service.takeDecodedAhead("a.jpg", fileID: replaced, for: diagnoser))
        let got = diagnoser.pipeline.diagnose(image)
        let expected = try DiagnosisPipeline(bundleDirectory: Fixtures.factoryBundle).diagnose(path: photos[1])
        #expect(got.mahalanobis == expected.mahalanobis)
        #expect(got.disease == expected.disease)
    }
}
