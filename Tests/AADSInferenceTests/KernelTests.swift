import AADSCore
import AADSTestSupport
import CKernels
import Foundation
import Testing

@testable import AADSInference

/// Kernel inputs drawn from the shared SplitMix64 generator.
extension SplitMix64 {
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
    mutating func int8s(_ n: Int) -> [Int8] { (0..<n).map { _ in Int8(truncatingIfNeeded: next()) } }
    mutating func double(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53)
    }
}

/// A randomized convolution configuration.
struct ConvCase: CustomStringConvertible {
    var n = 1, c = 1, h = 1, w = 1, m = 1, group = 1
    var win = Window(
        kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, padTop: 0, padLeft: 0, padBottom: 0, padRight: 0, outH: 1, outW: 1)
    var input: [Int8] = [], weights: [Int8] = []
    var inZp: Int32 = 0, outZp: Int32 = 0, outMin: Int32 = -128, outMax: Int32 = 127
    var mult: [Double] = [], offset: [Double] = []

    var description: String {
        "n\(n) c\(c) \(h)x\(w) m\(m) g\(group) k\(win.kh)x\(win.kw) s\(win.sh),\(win.sw) d\(win.dh) pads \(win.padTop),\(win.padLeft),\(win.padBottom),\(win.padRight)"
    }

    /// `extremes`: also draw cases whose values spread over thousands of steps or whose offsets exceed the float32
    /// requantisation's bound. `dedicated`: a depthwise 3x3 or 5x5 kernel with stride 1 or 2 and no dilation (the
    /// shapes the depthwise kernels compute in tiles along the row), over more channels and larger images.
    static func random(
        _ r: inout SplitMix64, depthwise: Bool, extremes: Bool = false, dedicated: Bool = false
    ) -> ConvCase {
        var k = ConvCase()
        k.n = r.int(1...2)
        k.h = r.int(1...(dedicated ? 20 : 11))
        k.w = r.int(1...(dedicated ? 20 : 11))
        var kh = r.int(1...7)
        var kw = r.int(1...7)
        var dil = r.int(0...4) == 0 ? 2 : 1
        var sh = r.int(1...3)
        var sw = r.int(1...3)
        if dedicated {
            kh = r.int(0...1) == 0 ? 3 : 5
            kw = kh
            dil = 1
            sh = r.int(1...2)
            sw = sh
        }
        let pt = r.int(0...(kh - 1))
        let pl = r.int(0...(kw - 1))
        let pb = r.int(0...(kh - 1))
        let pr = r.int(0...(kw - 1))
        let ekh = (kh - 1) * dil + 1
        let ekw = (kw - 1) * dil + 1
        // make sure at least one output exists
        k.h = max(k.h, ekh - pt - pb)
        k.w = max(k.w, ekw - pl - pr)
        let outH = (k.h + pt + pb - ekh) / sh + 1
        let outW = (k.w + pl + pr - ekw) / sw + 1
        k.win = Window(
            kh: kh, kw: kw, sh: sh, sw: sw, dh: dil, dw: dil, padTop: pt, padLeft: pl, padBottom: pb, padRight: pr,
            outH: outH, outW: outW)
        if dedicated {
            k.c = [1, 5, 16, 17, 47, 144, 330][r.int(0...6)]
            k.m = k.c
            k.group = k.c
        } else if depthwise {
            k.c = [1, 3, 8, 16, 17, 31, 32, 33, 48, 70][r.int(0...9)]
            k.m = k.c
            k.group = k.c
        } else {
            k.group = [1, 1, 1, 2, 3][r.int(0...4)]
            k.c = k.group * [1, 2, 3, 4, 5, 7, 8, 16, 19, 33][r.int(0...9)]
            k.m = k.group * [1, 3, 8, 15, 16, 17, 32, 40, 64, 65][r.int(0...9)]
        }
        k.input = r.int8s(k.n * k.c * k.h * k.w)
        k.weights = r.int8s(k.m * (k.c / k.group) * kh * kw)
        // Extremes: some -128 weights and inputs.
        if !k.weights.isEmpty { k.weights[0] = -128 }
        if !k.input.isEmpty { k.input[k.input.count - 1] = -128 }
        k.inZp = Int32(r.int(-128...127))
        k.outZp = Int32(r.int(-128...127))
        if r.int(0...2) == 0 {
            k.outMin = Int32(r.int(-128...0))
            k.outMax = Int32(r.int(Int(k.outMin)...127))
        }
        let fan = Double((k.c / k.group) * kh * kw)
        k.mult = (0..<k.m).map { _ in r.double(0.2, 3) / (fan * 64) }
        // Some multipliers of exactly 0.5 / 0.25 to exercise ties (round half to even).
        if k.m > 1 { k.mult[1] = 0.5 }
        k.offset = (0..<k.m).map { _ in r.double(-40, 40).rounded() + (r.int(0...1) == 0 ? 0.5 : 0) }
        switch extremes ? r.int(0...5) : 5 {
        case 0:  // values spread over thousands of steps: mostly clamped, some near the float32 path's limits
            k.mult = k.mult.map { $0 * 60 }
        case 1:  // an offset beyond the float32 requantisation's bound: that layer requantises in double
            k.offset[0] = r.int(0...1) == 0 ? 600.5 : -600
        default: break
        }
        return k
    }

    func reference() -> [Int8] {
        ReferenceKernels.conv(
            input: input, n: n, c: c, h: h, w: w, weights: weights, m: m, group: group, window: win, inZp: inZp,
            mult: mult, offset: offset, outZp: outZp, outMin: outMin, outMax: outMax)
    }

    /// Runs the engine's step (prepacking included) with the given kernel variant and thread count.
    /// `band`: with `.onnxRuntime` rounding, the half-width around x.5 decided by the float reference.
    func engine(
        variant: Int32, threads: Int, depthwise: Bool, rounding: Rounding = .exact, band: Double = referenceRoundingBand
    ) throws -> [Int8] {
        // Express mult/offset through the scales the steps take: inScale·wScale/outScale = mult, bias/outScale = offset.
        let outScale: Float = 1
        let wScales = mult.map { Float($0) }
        let bias = offset
        let inBuf = try AlignedBuffer(input)
        let outCount = n * win.outH * win.outW * m
        let outBuf = try AlignedBuffer(byteCount: outCount)
        let step: any Step
        let outQ = QParams(scale: outScale, zeroPoint: outZp)
        if depthwise {
            let wts = try QDepthwiseWeights(
                weights: weights, channels: c, kh: win.kh, kw: win.kw, weightScales: wScales, bias: bias, inScale: 1,
                outScale: outScale, band: band)
            step = QDepthwiseStep(
                input: 0, output: 1, node: "dw", weights: wts, batch: n, inH: h, inW: w, window: win, inZp: inZp,
                outQ: outQ, outMin: outMin, outMax: outMax)
        } else {
            let wts = try QConvWeights(
                weights: weights, groups: group, cout: m, cinPerGroup: c / group, kh: win.kh, kw: win.kw,
                weightScales: wScales, bias: bias, inScale: 1, outScale: outScale, inZeroPoint: inZp)
            step = QConvStep(
                input: 0, output: 1, node: "conv", weights: wts, batch: n, inShape: (c, h, w),
                outShape: (m, win.outH, win.outW), window: win, inZp: inZp, outQ: outQ, outMin: outMin, outMax: outMax,
                band: band)
        }
        let ptrs = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 2)
        defer { ptrs.deallocate() }
        ptrs[0] = inBuf.raw
        ptrs[1] = outBuf.raw
        let scratch = try AlignedBuffer(byteCount: 1024)
        var ctx = ExecContext(
            pointers: ptrs, threads: threads, variant: variant, scratch: scratch.raw, rounding: rounding)
        ctx.minWorkPerChunk = 1  // split even these small cases between threads
        step.run(ctx)
        return Array(UnsafeBufferPointer(start: outBuf.pointer(Int8.self), count: outCount))
    }

    /// The reference for `Rounding.onnxRuntime` with the scales `engine` gives the steps.
    func referenceOnnxRuntimeRounding(band: Double) -> [Int8] {
        ReferenceKernels.convOnnxRuntimeRounding(
            input: input, n: n, c: c, h: h, w: w, weights: weights, m: m, group: group, window: win, inZp: inZp,
            inScale: 1, weightScales: mult.map { Float($0) }, bias: offset.map { Float($0) }, outScale: 1,
            outZp: outZp, outMin: outMin, outMax: outMax, band: band)
    }

    /// The reference with the float multipliers the engine derives (mult rounded through Float weight scales).
    func referenceAsEngine() -> [Int8] {
        var k = self
        k.mult = mult.map { Double(1) * Double(Float($0)) / Double(Float(1)) }
        return k.reference()
    }
}

@Suite struct KernelTests {
    static let variants: [Int32] = (0..<Int32(AADS_VARIANT_COUNT)).filter { aads_variant_available($0) != 0 }

    @Test func reportsVariants() {
        print(
            "[kernels] available: \(KernelTests.variants.map { String(cString: aads_variant_name($0)) }), best \(String(cString: aads_variant_name(aads_variant_best())))"
        )
        #expect(KernelTests.variants.contains(Int32(AADS_VARIANT_PORTABLE)))
        #expect(KernelTests.variants.contains(aads_variant_best()))
    }

    @Test(arguments: [false, true])
    func everyVariantEqualsReference(depthwise: Bool) throws {
        var r = SplitMix64(seed: depthwise ? 7 : 3)
        for i in 0..<60 {
            let k = ConvCase.random(&r, depthwise: depthwise, extremes: true)
            let ref = k.referenceAsEngine()
            for v in KernelTests.variants {
                let got = try k.engine(variant: v, threads: 1, depthwise: depthwise)
                let bad = zip(got, ref).filter { $0 != $1 }.count
                #expect(
                    bad == 0,
                    "case \(i) \(k) variant \(String(cString: aads_variant_name(v))): \(bad) of \(ref.count) differ")
            }
            let threaded = try k.engine(variant: aads_variant_best(), threads: 3, depthwise: depthwise)
            #expect(threaded == ref, "case \(i) \(k) with 3 threads")
        }
    }

    /// Depthwise 3x3 and 5x5, stride 1 and 2: tiles of interior pixels, borders, tiny images, odd channel counts and
    /// several chunks of channels, with both roundings, on every variant.
    @Test func dedicatedDepthwiseShapesEqualReference() throws {
        var r = SplitMix64(seed: 53)
        for i in 0..<40 {
            let k = ConvCase.random(&r, depthwise: true, extremes: true, dedicated: true)
            let ref = k.referenceAsEngine()
            let band = i % 4 == 0 ? 0.5 : referenceRoundingBand
            let refOrt = k.referenceOnnxRuntimeRounding(band: band)
            for v in KernelTests.variants {
                let name = String(cString: aads_variant_name(v))
                let got = try k.engine(variant: v, threads: 1, depthwise: true)
                let bad = zip(got, ref).filter { $0 != $1 }.count
                #expect(bad == 0, "case \(i) \(k) variant \(name): \(bad) of \(ref.count) differ")
                let ort = try k.engine(variant: v, threads: 1, depthwise: true, rounding: .onnxRuntime, band: band)
                let badOrt = zip(ort, refOrt).filter { $0 != $1 }.count
                #expect(badOrt == 0, "case \(i) \(k) band \(band) variant \(name): \(badOrt) of \(ref.count) differ")
            }
            let threaded = try k.engine(variant: aads_variant_best(), threads: 3, depthwise: true)
            #expect(threaded == ref, "case \(i) \(k) with 3 threads")
        }
    }

    /// With ONNX Runtime rounding every variant decides near-half outputs by the same float reference: with the
    /// band widened to the whole step every output takes the float path, with the real band only the rare ones.
    @Test(arguments: [false, true])
    func everyVariantEqualsFloatReferenceRounding(depthwise: Bool) throws {
        var r = SplitMix64(seed: depthwise ? 29 : 31)
        var decided = 0
        for i in 0..<40 {
            let k = ConvCase.random(&r, depthwise: depthwise)
            for band in [0.5, referenceRoundingBand] {
                let ref = k.referenceOnnxRuntimeRounding(band: band)
                if band == 0.5 { decided += zip(ref, k.referenceAsEngine()).filter { $0 != $1 }.count }
                for v in KernelTests.variants {
                    let got = try k.engine(
                        variant: v, threads: 1, depthwise: depthwise, rounding: .onnxRuntime, band: band)
                    let bad = zip(got, ref).filter { $0 != $1 }.count
                    #expect(
                        bad == 0,
                        "case \(i) \(k) band \(band) variant \(String(cString: aads_variant_name(v))): \(bad) of \(ref.count) differ"
                    )
                }
            }
        }
        // The float path must change some results, or this compared the exact path with itself. (Depthwise sums of
        // at most 49 small products are exact in float32 here, so only the general convolution shows it.)
        if !depthwise { #expect(decided > 0) }
    }

    /// A pointwise convolution deep enough for ONNX Runtime's SGEMM to sum each output in several K blocks, every
    /// output decided by the float reference (the band widened to the whole step).
    @Test func deepPointwiseFloatReferenceCrossesKBlocks() throws {
        var r = SplitMix64(seed: 43)
        var k = ConvCase()
        (k.h, k.w, k.c, k.m) = (40, 40, 300, 40)
        k.win.outH = 40
        k.win.outW = 40
        // Large positive products whose sum the offset mostly cancels, so that summing the blocks in another order
        // changes some outputs.
        k.input = r.int8s(k.c * k.h * k.w)
        k.weights = r.int8s(k.m * k.c).map { $0 & 127 }
        k.inZp = -128
        k.outZp = 5
        k.mult = (0..<k.m).map { _ in r.double(0.2, 3) / (300 * 64) }
        k.offset = (0..<k.m).map { n in
            let wsum = k.weights[(n * k.c)..<((n + 1) * k.c)].reduce(0) { $0 + Double($1) }
            return -k.mult[n] * wsum * 127.5 + r.double(-20, 20)
        }
        #expect(mlasStrideK(n: k.h * k.w, k: k.c) < k.c)
        let ref = k.referenceOnnxRuntimeRounding(band: 0.5)
        for v in KernelTests.variants {
            let got = try k.engine(variant: v, threads: 1, depthwise: false, rounding: .onnxRuntime, band: 0.5)
            let bad = zip(got, ref).filter { $0 != $1 }.count
            #expect(bad == 0, "variant \(String(cString: aads_variant_name(v))): \(bad) of \(ref.count) differ")
        }
    }

    /// Offsets a hair above or below x.5 are ties once rounded to float32: kernels that requantise in float32 first
    /// must decide those outputs in double precision, as the reference does.
    @Test(arguments: [false, true])
    func float32RequantisationDefersNearTiesToDouble(depthwise: Bool) throws {
        var k = ConvCase()
        (k.h, k.w, k.m) = (16, 16, 40)  // two full blocks of 16 channels and a partial one
        k.c = depthwise ? 40 : 4
        k.group = depthwise ? 40 : 1
        k.win.outH = 16
        k.win.outW = 16
        k.input = (0..<(k.c * k.h * k.w)).map { Int8(truncatingIfNeeded: $0 * 7 + $0 / 256) }
        // Each output is one input minus the zero point, plus its channel's offset.
        k.weights = (0..<(k.m * (k.c / k.group))).map { $0 % (k.c / k.group) == 0 ? 1 : 0 }
        k.inZp = 3
        k.mult = [Double](repeating: 1, count: k.m)
        k.offset = (0..<k.m).map { n in
            let hair = n % 2 == 0 ? 1e-9 : -1e-9
            return Double(n % 7 - 3) + 0.5 + hair
        }
        #expect(k.offset.allSatisfy { Float($0) - Float($0).rounded(.down) == 0.5 })
        let ref = k.reference()
        for v in KernelTests.variants {
            let got = try k.engine(variant: v, threads: 1, depthwise: depthwise)
            let bad = zip(got, ref).filter { $0 != $1 }.count
            #expect(bad == 0, "variant \(String(cString: aads_variant_name(v))): \(bad) of \(ref.count) differ")
        }
    }

    @Test func requantizeRoundsHalfToEvenAndClamps() {
        var r = SplitMix64(seed: 11)
        for _ in 0..<20000 {
            let acc = Int32(truncatingIfNeeded: r.int(-3_000_000...3_000_000))
            let mult = [0.5, 0.25, 1, r.double(1e-6, 1e-3), r.double(0, 2)][r.int(0...4)]
            let offset = r.double(-300, 300).rounded() / 2
            let zp = Int32(r.int(-128...127))
            let lo = Int32(r.int(-128...0))
            let hi = Int32(r.int(0...127))
            let c = aads_requantize(acc, mult, offset, zp, lo, hi)
            let s = requantize(acc, mult: mult, offset: offset, zp, lo, hi)
            #expect(c == s, "acc \(acc) mult \(mult) offset \(offset)")
            // independent check in exact rational arithmetic for the 0.5/0.25 multipliers
            if mult == 0.5 {
                let twice = Int64(acc) + Int64(offset * 2)  // 2v exactly
                var q = twice / 2
                if twice % 2 != 0 {
                    let lower = twice < 0 ? q - 1 : q
                    q = lower % 2 == 0 ? lower : lower + 1
                }
                let expect = Int8(max(Int64(lo), min(Int64(hi), q + Int64(zp))))
                #expect(s == expect, "acc \(acc) offset \(offset) zp \(zp)")
            }
        }
    }

    @Test func elementwiseKernelsEqualReference() throws {
        var r = SplitMix64(seed: 17)
        for i in 0..<200 {
            let n = r.int(1...300)
            let a = r.int8s(n)
            let b = r.int8s(n)
            let mul = r.int(0...1) == 1
            let scalar = r.int(0...3) == 0
            let qa = QParams(scale: Float(r.double(0.001, 0.2)), zeroPoint: Int32(r.int(-128...127)))
            let qb = QParams(scale: Float(r.double(0.001, 0.2)), zeroPoint: Int32(r.int(-128...127)))
            let qc = QParams(scale: Float(r.double(0.001, 0.3)) * (mul ? 0.05 : 1), zeroPoint: Int32(r.int(-128...127)))
            let (lo, hi) = r.int(0...3) == 0 ? (Int32(r.int(-128...0)), Int32(r.int(0...127))) : (-128, 127)
            let bc = Broadcast(out: [n], outNHWC: false, operands: [([n], false), (scalar ? [1] : [n], false)])
            var ref = [Int8](repeating: 0, count: n)
            QBinaryStep.apply(op: mul ? .mul : .add, a, b, &ref, qa, qb, qc, bc, lo, hi)
            for v in KernelTests.variants {
                var got = [Int8](repeating: 0, count: n)
                var p = aads_qbinary(
                    sa: qa.scale, sb: qb.scale, sc: qc.scale, za: qa.zeroPoint, zb: qb.zeroPoint, zc: qc.zeroPoint,
                    out_min: lo, out_max: hi, mul: mul ? 1 : 0, b_scalar: scalar ? 1 : 0)
                aads_qbinary_run(v, &p, a, b, &got, n)
                #expect(got == ref, "case \(i) variant \(String(cString: aads_variant_name(v)))")
            }
        }
        // QuantizeLinear with the NCHW → NHWC transpose, including NaN and infinities.
        for i in 0..<50 {
            let (c, hw) = (r.int(1...9), r.int(1...600))
            var x = (0..<c * hw).map { _ in Float(r.double(-20, 20)) }
            x[0] = .nan
            if x.count > 2 { (x[1], x[2]) = (.infinity, -.infinity) }
            let q = QParams(scale: Float(r.double(0.01, 0.2)), zeroPoint: Int32(r.int(-128...127)))
            var ref = [Int8](repeating: 0, count: x.count)
            var got = ref
            QuantizeStep.reference(x, &ref, shape: [1, c, hw, 1], q: q)
            for v in KernelTests.variants {
                got = [Int8](repeating: 0, count: x.count)
                QuantizeStep.apply(x, &got, shape: [1, c, hw, 1], q: q, variant: v)
                #expect(got == ref, "quantize case \(i) variant \(String(cString: aads_variant_name(v)))")
            }
        }
    }
}
