import AADSCore
import AADSTestSupport
import Foundation

@testable import AADSImage

/// The committed image fixtures (Tests/Fixtures/images, made by tools/fixtures/images).
extension Fixtures {
    /// The path of an image fixture, relative to Tests/Fixtures/images.
    static func image(_ relative: String) -> String { path("images/" + relative) }

    static func imageData(_ relative: String) throws -> Data { try Data(contentsOf: url("images/" + relative)) }

    /// One Pillow reference: a JPEG, a target size and policy, the expected pixels and decode facts.
    struct Case: Decodable, Sendable, CustomStringConvertible {
        var name: String
        var jpeg: String
        var size: Int
        var policy: String
        var reference: String
        var orientation: Int
        var sourceWidth: Int
        var sourceHeight: Int
        var dctScale: String
        var width: Int
        var height: Int
        /// Pillow's rendering from its own DCT-scaled decode (`Image.draft`) at `dctScale`, where made.
        var scaledReference: String?

        enum CodingKeys: String, CodingKey {
            case name, jpeg, size, policy, reference, orientation, width, height
            case sourceWidth = "source_width"
            case sourceHeight = "source_height"
            case dctScale = "dct_scale"
            case scaledReference = "scaled_reference"
        }

        var description: String { name }
    }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: url("images/cases.json")),
            let cases = try? JSONDecoder().decode([Case].self, from: data)
        else { return [] }
        return cases
    }()
}

/// Mean and maximum absolute difference of two equally long byte arrays.
func pixelDifference(_ a: [UInt8], _ b: [UInt8]) -> (mean: Double, max: Int) {
    guard a.count == b.count, !a.isEmpty else { return (.infinity, .max) }
    var total = 0
    var worst = 0
    for i in 0..<a.count {
        let d = abs(Int(a[i]) - Int(b[i]))
        total += d
        worst = max(worst, d)
    }
    return (Double(total) / Double(a.count), worst)
}

/// The error code thrown by `body`, or nil when it succeeded.
func errorCode(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as ImageError {
        return error.code
    } catch {
        return "unexpected: \(error)"
    }
}
