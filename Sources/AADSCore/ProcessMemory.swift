import CMalloc
import Foundation

/// Memory figures of this process from `/proc/self/status` (Linux); nil where unavailable.
public enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes.
    public static func peakResidentBytes() -> Int? { field("VmHWM") }
    /// Current resident set size (VmRSS) in bytes.
    public static func residentBytes() -> Int? { field("VmRSS") }

    /// Serves every allocation of `bytes` or more with its own mapping, which goes back to the system when it is
    /// freed. By default the C library raises this threshold each time such a block is freed, so after a model
    /// load the freed copies of large weights stay resident as holes in the heap. Call once, at start-up.
    @discardableResult
    public static func returnLargeBlocksToSystem(atLeast bytes: Int = 128 * 1024) -> Bool {
        mallopt(M_MMAP_THRESHOLD, Int32(clamping: bytes)) == 1
    }

    static func field(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
