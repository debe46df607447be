import CKernels
import Foundation

/// The steps needed to compute a set of values from a set of seed values, with a static memory plan: every value
/// gets a fixed offset in one arena, and values whose lifetimes do not overlap share memory.
final class ExecutionPlan {
    let steps: [any Step]
    let arena: AlignedBuffer
    let scratch: AlignedBuffer
    let pointers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let valueCount: Int
    /// Arena bytes if every value had its own buffer (for reports).
    let unsharedBytes: Int

    static let maxArenaBytes = 1 << 30

    /// `threads`: how many threads the plan's runs may use (steps that run channels in scratch memory get that
    /// many scratch planes).
    /// `variant`: the kernel variant the plan runs on (AADS_VARIANT_*).
    init(program: Program, seeds: [Int], outputs: [Int], threads: Int = 1, variant: Int32) throws {
        let producer = program.producerIndex()
        let available = Set(seeds)
        var needed = Set<Int>()
        var visited = Set<Int>()
        var stack = outputs
        while let v = stack.popLast() {
            if available.contains(v) || !visited.insert(v).inserted { continue }
            guard let s = producer[v] else {
                throw fail(.badInput, "tensor '\(program.values[v].name)' cannot be computed from the given inputs")
            }
            needed.insert(s)
            stack.append(contentsOf: program.steps[s].inputs)
        }
        let order = needed.sorted()
        steps = ExecutionPlan.fused(
            order.map { program.steps[$0] }, keeping: available.union(outputs), threads: threads, variant: variant)

        // Lifetimes in step positions; seeds are defined before the first step, outputs live past the last.
        var first: [Int: Int] = [:]
        var last: [Int: Int] = [:]
        for s in seeds { (first[s], last[s]) = (-1, -1) }
        for (pos, step) in steps.enumerated() {
            for v in step.inputs { last[v] = max(last[v] ?? pos, pos) }
            for v in step.outputs {
                if first[v] == nil { first[v] = pos }
                last[v] = max(last[v] ?? pos, pos)
            }
        }
        for v in outputs { last[v] = steps.count }
        for v in first.keys where last[v] == nil { last[v] = first[v] }

        // A step that writes in place takes over its input's buffer when the input dies there; the two values
        // then form one buffer that lives from the first one's definition to the last one's last use.
        var buffer: [Int: Int] = [:]
        func root(_ v: Int) -> Int { buffer[v].map(root) ?? v }
        for (pos, step) in steps.enumerated() where step.writesInPlace {
            let (x, y) = (step.inputs[0], step.outputs[0])
            guard !available.contains(x), last[x] == pos, first[y] == pos,
                program.values[x].reservedBytes == program.values[y].reservedBytes
            else { continue }
            let r = root(x)
            buffer[y] = r
            last[r] = max(last[r] ?? pos, last[y] ?? pos)
        }

        // Greedy by size: place the largest buffers first at the lowest offset free during their lifetime.
        struct Placed { var offset: Int, size: Int, first: Int, last: Int }
        var placed: [Placed] = []
        var offsets: [Int: Int] = [:]
        var total = 0
        var unshared = 0
        for v in first.keys { unshared += program.values[v].reservedBytes }
        let ids = first.keys.filter { buffer[$0] == nil }.sorted {
            (program.values[$0].reservedBytes, $1) > (program.values[$1].reservedBytes, $0)
        }
        for v in ids {
            let size = program.values[v].reservedBytes
            let (f, l) = (first[v] ?? -1, last[v] ?? steps.count)
            let busy = placed.filter { $0.first <= l && f <= $0.last }.sorted { $0.offset < $1.offset }
            var offset = 0
            for b in busy {
                if offset + size <= b.offset { break }
                offset = max(offset, b.offset + b.size)
            }
            placed.append(Placed(offset: offset, size: size, first: f, last: l))
            offsets[v] = offset
            total = max(total, offset + size)
            guard total <= ExecutionPlan.maxArenaBytes else {
                throw fail(.tooLarge, "the activations need more than \(ExecutionPlan.maxArenaBytes) bytes")
            }
        }
        for v in buffer.keys { offsets[v] = offsets[root(v)] }
        unsharedBytes = unshared
        arena = try AlignedBuffer(byteCount: total)
        scratch = try AlignedBuffer(byteCount: steps.map(\.scratchBytes).max() ?? 0)
        valueCount = program.values.count
        pointers = .allocate(capacity: max(1, valueCount))
        pointers.initialize(repeating: nil, count: max(1, valueCount))
        for (v, o) in offsets { pointers[v] = arena.raw + o }
    }

    deinit { pointers.deallocate() }

    /// `steps` with each float convolution followed by a clamping activation (Relu, Clip) replaced by one
    /// convolution that clamps its sums, then each float convolution of one group that is followed by elementwise
    /// activations and a depthwise convolution (an inverted residual block's expansion), and the activations after
    /// that, replaced by one `FConvDepthwiseStep`, when the values in between are read by nothing else and are not
    /// among `keeping` (the plan's seeds and outputs).
    static func fused(_ original: [any Step], keeping: Set<Int>, threads: Int, variant: Int32) -> [any Step] {
        var readers: [Int: Int] = [:]
        for step in original { for v in step.inputs { readers[v, default: 0] += 1 } }
        func internalValue(_ v: Int) -> Bool { readers[v] == 1 && !keeping.contains(v) }
        var steps: [any Step] = []
        for step in original {
            if let a = step as? FUnaryStep, let conv = steps.last as? FConvStep, internalValue(conv.outputs[0]),
                let both = conv.clamped(by: a)
            {
                steps[steps.count - 1] = both
            } else {
                steps.append(step)
            }
        }
        var result: [any Step] = []
        var i = 0
        while i < steps.count {
            defer { i += 1 }
            guard let first = steps[i] as? FConvStep else {
                result.append(steps[i])
                continue
            }
            var (j, value, activations) = (i + 1, first.outputs[0], [FUnaryStep]())
            while j < steps.count, let a = steps[j] as? FUnaryStep, a.inputs[0] == value, internalValue(value) {
                activations.append(a)
                (value, j) = (a.outputs[0], j + 1)
            }
            guard j < steps.count, let depthwise = steps[j] as? FConvStep, depthwise.inputs[0] == value,
                internalValue(value),
                FConvDepthwiseStep.fits(first: first, activations: activations, depthwise: depthwise)
            else {
                result.append(steps[i])
                continue
            }
            // Activations of the depthwise output run on each block of channels as soon as it is written.
            var (k, out, after) = (j + 1, depthwise.outputs[0], [FUnaryStep]())
            while k < steps.count, let a = steps[k] as? FUnaryStep, a.inputs[0] == out, internalValue(out),
                a.count == depthwise.batch * Int(depthwise.param.cout) * depthwise.outPlane
            {
                after.append(a)
                (out, k) = (a.outputs[0], k + 1)
            }
            result.append(
                FConvDepthwiseStep(
                    first: first, activations: activations, depthwise: depthwise, after: after, threads: threads,
                    variant: variant))
            i = k - 1
        }
        return result
    }

    func execute(threads: Int, variant: Int32, rounding: Rounding) {
        let ctx = ExecContext(
            pointers: pointers, threads: threads, variant: variant, scratch: scratch.raw, rounding: rounding)
        for step in steps { step.run(ctx) }
    }

    func pointer(_ v: Int) -> UnsafeMutableRawPointer? { v < valueCount ? pointers[v] : nil }

    /// Runs the steps one by one, adding each one's wall time (ms) to `times`.
    func executeTimed(threads: Int, variant: Int32, rounding: Rounding, times: inout [Double]) {
        let ctx = ExecContext(
            pointers: pointers, threads: threads, variant: variant, scratch: scratch.raw, rounding: rounding)
        if times.count != steps.count { times = [Double](repeating: 0, count: steps.count) }
        for (i, step) in steps.enumerated() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            step.run(ctx)
            times[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
    }
}
