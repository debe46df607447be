import CKernels
import Dispatch
import Foundation

/// Scale and zero point of an int8 tensor: real = scale × (q − zeroPoint).
struct QParams: Sendable, Equatable {
    var scale: Float
    var zeroPoint: Int32
}

/// A tensor computed at run time. Float tensors are stored row-major in ONNX order (NCHW); int8 tensors of rank 4
/// are stored NHWC (channels innermost), other int8 tensors row-major.
struct Value: Sendable {
    var name: String
    var shape: [Int]
    var quant: QParams?

    var count: Int { shape.reduce(1, *) }
    var isQuantized: Bool { quant != nil }
    var nhwc: Bool { quant != nil && shape.count == 4 }
    var elementSize: Int { quant == nil ? 4 : 1 }
    /// Bytes reserved in the arena, with the slack the kernels may read past the end.
    var reservedBytes: Int { (count * elementSize + Int(AADS_KERNEL_SLACK) + 63) / 64 * 64 }
}

/// Memory owned by the engine, 64-byte aligned, zero-initialised. Shared read-only between threads.
final class AlignedBuffer: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) throws {
        self.byteCount = byteCount
        var p: UnsafeMutableRawPointer?
        let size = max(64, (byteCount + Int(AADS_KERNEL_SLACK) + 63) / 64 * 64)
        guard posix_memalign(&p, 64, size) == 0, let p else {
            throw fail(.tooLarge, "cannot allocate \(size) bytes")
        }
        memset(p, 0, size)
        raw = p
    }

    convenience init<T>(_ array: [T]) throws {
        try self.init(byteCount: array.count * MemoryLayout<T>.stride)
        array.withUnsafeBytes { src in
            if let base = src.baseAddress { raw.copyMemory(from: base, byteCount: src.count) }
        }
    }

    func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> { raw.assumingMemoryBound(to: T.self) }

    deinit { free(raw) }
}

/// What a step sees while running: where each value lives, how many threads it may use, which kernels.
struct ExecContext {
    let pointers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let threads: Int
    let variant: Int32
    /// Per-run scratch memory of at least the largest `scratchBytes` of the plan's steps.
    let scratch: UnsafeMutableRawPointer
    /// Rounding of near-half int8 results.
    let rounding: Rounding
    /// Smallest amount of work (multiply-accumulates) worth a thread of its own.
    var minWorkPerChunk = 150_000

    @inline(__always) func raw(_ id: Int) -> UnsafeMutableRawPointer { pointers[id].unsafelyUnwrapped }
    @inline(__always) func f32(_ id: Int) -> UnsafeMutablePointer<Float> {
        raw(id).assumingMemoryBound(to: Float.self)
    }
    @inline(__always) func i8(_ id: Int) -> UnsafeMutablePointer<Int8> { raw(id).assumingMemoryBound(to: Int8.self) }
}

/// One operation of a lowered program. Steps are immutable after construction and may be shared between models.
protocol Step: AnyObject, Sendable {
    /// Runtime values read, by id.
    var inputs: [Int] { get }
    /// Runtime values written, by id.
    var outputs: [Int] { get }
    /// The ONNX node this step computes (the main node of a fused group).
    var node: String { get }
    /// A short description (kernel kind) for reports.
    var kind: String { get }
    /// Scratch memory the step needs while running.
    var scratchBytes: Int { get }
    /// True when the step may write its output over its first input (an elementwise step whose output has the
    /// input's size): the memory plan then lets the two share a buffer when the input is not read afterwards.
    var writesInPlace: Bool { get }
    func run(_ ctx: ExecContext)
}

extension Step {
    var scratchBytes: Int { 0 }
    var writesInPlace: Bool { false }
}

/// Splits `0..<count` into at most `threads` contiguous chunks of at least `minChunk` and runs them in parallel.
/// `work`: the operations of the whole range; chunks get at least `minWorkPerChunk` of it, because handing a chunk
/// to another thread costs about as much as some tens of thousands of multiply-accumulates.
@inline(__always)
func parallelFor(
    _ count: Int, threads: Int, minChunk: Int = 1, work: Int = .max, minWorkPerChunk: Int = 150_000,
    _ body: (Int, Int) -> Void
) {
    let byWork = work == .max ? threads : max(1, work / minWorkPerChunk)
    let chunks = min(threads, byWork, max(1, count / max(1, minChunk)))
    if chunks <= 1 {
        body(0, count)
        return
    }
    // The chunks write disjoint parts of the output; the body only reads shared state.
    parallelChunks(chunks, threads: threads) { i in
        let lo = count * i / chunks
        let hi = count * (i + 1) / chunks
        if lo < hi { body(lo, hi) }
    }
}

/// Runs `body(i)` for i in 0..<chunks on up to `threads` threads: the worker pool's, or Dispatch's when another
/// job holds the pool.
func parallelChunks(_ chunks: Int, threads: Int, _ body: (Int) -> Void) {
    if WorkerPool.shared.run(chunks: chunks, threads: min(threads, chunks), body) { return }
    withoutActuallyEscaping(body) { body in
        let box = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: chunks) { box.value($0) }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Requantisation of an integer accumulator, in double precision: round_half_even(clamp(acc × mult + offset)) + zp,
/// clamped to [lo, hi]. The specification of the C kernels' epilogue (`aads_requantize`).
@inline(__always)
func requantize(_ acc: Int32, mult: Double, offset: Double, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
    var v = offset.addingProduct(Double(acc), mult)
    let fl = Double(lo - zp)
    let fh = Double(hi - zp)
    v = v < fl ? fl : v
    v = v > fh ? fh : v
    return Int8(truncatingIfNeeded: Int32(v.rounded(.toNearestOrEven)) + zp)
}

/// ONNX QuantizeLinear to int8.
@inline(__always)
func quantize(_ x: Float, _ q: QParams) -> Int8 {
    var v = (x / q.scale).rounded(.toNearestOrEven)
    if v.isNaN { v = 0 }
    let r = v + Float(q.zeroPoint)
    return Int8(max(-128, min(127, r)))
}

/// ONNX DequantizeLinear from int8.
@inline(__always)
func dequantize(_ x: Int8, _ q: QParams) -> Float {
    Float(Int32(x) - q.zeroPoint) * q.scale
}

/// Logical [N, C, H, W] index → storage offset of an NHWC tensor.
@inline(__always)
func nhwcOffset(_ n: Int, _ c: Int, _ h: Int, _ w: Int, _ shape: [Int]) -> Int {
    ((n * shape[2] + h) * shape[3] + w) * shape[1] + c
}
