import Foundation
import Testing

@testable import AADSImage

@Suite struct ErrorMessageTests {
    /// A file that is not a JPEG (say /etc/passwd under a .jpg name) is refused without its bytes in the message.
    @Test func notJPEGNamesNoByteOfTheFile() throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64))
        do {
            _ = try preprocessor.process(jpeg: Data("root:x:0:0:root:/root:/bin/bash\n".utf8))
            Issue.record("a text file was accepted")
        } catch let error as ImageError {
            #expect(error.kind == .notJPEG)
            #expect(!error.message.contains("0x72"))
            #expect(!error.message.contains("root"))
        }
    }
}
