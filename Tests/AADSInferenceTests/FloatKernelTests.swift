import AADSCore
import CKernels
import Foundation
import Testing

@testable import AADSInference

/// The float convolution kernels on every variant against a chain of fused multiply-adds computed here, clamped
/// when the case has a clamp: the optimised variants must equal it bit for bit, the portable one (separate multiply
/// and add) come within rounding.
@Suite struct FloatKernelTests {
    struct Case: CustomStringConvertible {
        var cin = 1, cout = 1, h = 1, w = 1, group = 1, kh = 1, kw = 1, stride = 1, pad = 0, dil = 1
        var bias = true
        /// The fused activation's bounds (aads_fconv's clamp), if any.
        var clamp: (lo: Float, hi: Float)?

        var outH: Int { (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1 }
        var outW: Int { (w + 2 * pad - dil * (kw - 1) - 1) / stride + 1 }
        var description: String {
            "cin \(cin) cout \(cout) \(h)x\(w) group \(group) \(kh)x\(kw) stride \(stride) pad \(pad) dil \(dil)"
                + (clamp.map { " clamp \($0.lo)...\($0.hi)" } ?? "")
        }

        func param(_ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>?) -> aads_fconv {
            aads_fconv(
                cin: Int32(cin), in_h: Int32(h), in_w: Int32(self.w), cout: Int32(cout), out_h: Int32(outH),
                out_w: Int32(outW), group: Int32(group), kh: Int32(kh), kw: Int32(kw), stride_h: Int32(stride),
                stride_w: Int32(stride), pad_t: Int32(pad), pad_l: Int32(pad), dil_h: Int32(dil), dil_w: Int32(dil),
                weights: w, bias: b, clamp: clamp == nil ? 0 : 1, clamp_lo: clamp?.lo ?? 0, clamp_hi: clamp?.hi ?? 0)
        }
    }

    /// Bias, then one fused multiply-add per tap inside the image, by input channel, tap row and tap column; and
    /// the sum of the terms' magnitudes, which bounds the portable kernel's rounding.
    static func reference(_ c: Case, _ x: [Float], _ wt: [Float], _ b: [Float]) -> (fused: [Float], size: [Float]) {
        let (cinG, coutG) = (c.cin / c.group, c.cout / c.group)
        var fused = [Float]()
        var size = [Float]()
        for oc in 0..<c.cout {
            for oh in 0..<c.outH {
                for ow in 0..<c.outW {
                    var acc: Float = c.bias ? b[oc] : 0
                    var mag = abs(acc)
                    for ic in 0..<cinG {
                        for ky in 0..<c.kh {
                            for kx in 0..<c.kw {
                                let ih = oh * c.stride - c.pad + ky * c.dil
                                let iw = ow * c.stride - c.pad + kx * c.dil
                                guard ih >= 0, ih < c.h, iw >= 0, iw < c.w else { continue }
                                let xv = x[((oc / coutG * cinG + ic) * c.h + ih) * c.w + iw]
                                let wv = wt[((oc * cinG + ic) * c.kh + ky) * c.kw + kx]
                                acc = acc.addingProduct(wv, xv)
                                mag += abs(wv * xv)
                            }
                        }
                    }
                    if let (lo, hi) = c.clamp {
                        let m = acc > lo ? acc : lo
                        acc = m < hi ? m : hi
                    }
                    fused.append(acc)
                    size.append(mag)
                }
            }
        }
        return (fused, size)
    }

    /// Output channels [lo, hi) of `c` by `variant`, the rest of the output left at NaN.
    static func run(_ c: Case, _ x: [Float], _ wt: [Float], _ b: [Float], variant: Int32, lo: Int, hi: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: c.cout * c.outH * c.outW)
        wt.withUnsafeBufferPointer { w in
            b.withUnsafeBufferPointer { bb in
                var p = c.param(w.baseAddress!, c.bias ? bb.baseAddress : nil)
                out.withUnsafeMutableBufferPointer { o in
                    aads_fconv_run(variant, &p, x, o.baseAddress!, Int32(lo), Int32(hi))
                }
            }
        }
        return out
    }

    /// A random case of kind `i % 5` with at least one output pixel.
    static func randomCase(_ r: inout SplitMix64, _ i: Int) -> Case {
        while true {
            let c = drawCase(&r, i)
            if c.outH >= 1 && c.outW >= 1 { return c }
        }
    }

    static func drawCase(_ r: inout SplitMix64, _ i: Int) -> Case {
        var c = Case()
        c.bias = r.int(0...3) != 0
        if r.int(0...2) == 0 { c.clamp = [(0, 6), (-0.5, 0.4), (0, .infinity)][r.int(0...2)] }
        switch i % 5 {
        case 0:  // pointwise, planes across the tile widths
            (c.cin, c.cout, c.h, c.w) = (r.int(1...70), r.int(1...13), r.int(1...12), r.int(1...30))
        case 1:  // one group, unfolded (cin·kh·kw ≤ 256), like the stem
            (c.cin, c.cout, c.kh, c.kw) = (r.int(1...8), r.int(1...11), [1, 3, 5][r.int(0...2)], [1, 3][r.int(0...1)])
            (c.stride, c.pad, c.dil) = (r.int(1...2), r.int(0...2), r.int(1...2))
            (c.h, c.w) = (r.int(5...20), r.int(5...90))
            // Now and then a stem's plane: taller than one band of a kernel's row buffer.
            if r.int(0...3) == 0 { (c.cin, c.dil, c.h, c.w) = (3, 1, r.int(100...240), r.int(100...230)) }
        case 2:  // depthwise; one in three over more channels than a register holds (channel-blocked kernels)
            let ch = r.int(0...2) == 0 ? r.int(10...40) : r.int(1...9)
            (c.cin, c.cout, c.group, c.kh, c.stride) = (ch, ch, ch, [3, 5][r.int(0...1)], r.int(1...2))
            (c.kw, c.pad, c.dil) = (c.kh, c.kh / 2, r.int(0...3) == 0 ? 2 : 1)
            (c.h, c.w) = (r.int(1...9), r.int(1...150))
            // Now and then a plane taller than one band of a kernel's row buffer.
            if r.int(0...3) == 0 { (c.cin, c.cout, c.group, c.h, c.w) = (2, 2, 2, r.int(140...300), r.int(100...150)) }
            // Or, one in three, many channels over a plane that a channel-blocked kernel takes in bands of rows.
            if r.int(0...2) == 0 {
                let many = r.int(16...48)
                (c.cin, c.cout, c.group, c.dil, c.h, c.w) = (many, many, many, 1, r.int(20...70), r.int(20...70))
            }
        case 3:  // one group, too deep to unfold: taps one by one
            (c.cin, c.cout, c.kh, c.kw, c.pad) = (r.int(29...40), r.int(1...6), 3, 3, 1)
            (c.h, c.w, c.stride) = (r.int(3...9), r.int(3...12), r.int(1...2))
        default:  // grouped
            let g = r.int(2...3)
            (c.cin, c.cout, c.group, c.kh, c.kw) = (g * r.int(1...4), g * r.int(1...3), g, 3, 3)
            (c.h, c.w, c.pad) = (r.int(3...11), r.int(3...11), 1)
        }
        return c
    }

    @Test func everyVariantMatchesTheFusedChain() throws {
        var r = SplitMix64(seed: 0xF10A7)
        for i in 0..<150 {
            let c = FloatKernelTests.randomCase(&r, i)
            var x = (0..<c.cin * c.h * c.w).map { _ in Float(r.double(-2, 2)) }
            // A clamped sum that is NaN comes out as the low bound.
            if c.clamp != nil && r.int(0...1) == 0 { x[r.int(0...x.count - 1)] = .nan }
            let wt = (0..<c.cout * (c.cin / c.group) * c.kh * c.kw).map { _ in Float(r.double(-1, 1)) }
            let b = (0..<c.cout).map { _ in Float(r.double(-1, 1)) }
            let (fused, size) = FloatKernelTests.reference(c, x, wt, b)
            for v in KernelTests.variants {
                let name = String(cString: aads_variant_name(v))
                let got = FloatKernelTests.run(c, x, wt, b, variant: v, lo: 0, hi: c.cout)
                if v == AADS_VARIANT_PORTABLE {
                    let bad = zip(zip(got, fused), size).filter { abs($0.0 - $0.1) > 1e-5 * $1 + 1e-30 }.count
                    #expect(bad == 0, "case \(i) \(c) portable: \(bad) of \(got.count) off")
                } else {
                    let bad = zip(got, fused).filter { $0 != $1 }.count
                    #expect(bad == 0, "case \(i) \(c) \(name): \(bad) of \(got.count) differ")
                }
                // Any range of output channels computes exactly those, identically.
                let lo = r.int(0...c.cout - 1)
                let hi = r.int(lo + 1...c.cout)
                let part = FloatKernelTests.run(c, x, wt, b, variant: v, lo: lo, hi: hi)
                let plane = c.outH * c.outW
                #expect(
                    Array(part[lo * plane..<hi * plane]) == Array(got[lo * plane..<hi * plane]), "case \(i) \(name)")
                #expect(part[..<(lo * plane)].allSatisfy(\.isNaN) && part[(hi * plane)...].allSatisfy(\.isNaN))
            }
        }
    }
}
