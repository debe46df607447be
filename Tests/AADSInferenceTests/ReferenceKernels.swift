import CKernels

@testable import AADSInference

/// Plain Swift specifications of the integer kernels. The C kernels (every variant) must produce exactly these
/// results; tests compare them over randomized shapes.
enum ReferenceKernels {
    /// int8 convolution on NHWC data with ONNX-layout weights [m][c/group][kh][kw]; output NHWC [n][oh][ow][m].
    /// acc = Σ (x − inZp)·w over the window (padding contributes 0), y = requantize(acc, mult[oc], offset[oc]).
    static func conv(
        input: [Int8], n: Int, c: Int, h: Int, w: Int, weights: [Int8], m: Int, group: Int, window win: Window,
        inZp: Int32, mult: [Double], offset: [Double], outZp: Int32, outMin: Int32, outMax: Int32
    ) -> [Int8] {
        let cg = c / group
        let mg = m / group
        var out = [Int8](repeating: 0, count: n * win.outH * win.outW * m)
        for b in 0..<n {
            for oh in 0..<win.outH {
                for ow in 0..<win.outW {
                    for oc in 0..<m {
                        let g = oc / mg
                        var acc: Int32 = 0
                        for ky in 0..<win.kh {
                            let ih = oh * win.sh - win.padTop + ky * win.dh
                            guard ih >= 0, ih < h else { continue }
                            for kx in 0..<win.kw {
                                let iw = ow * win.sw - win.padLeft + kx * win.dw
                                guard iw >= 0, iw < w else { continue }
                                for ic in 0..<cg {
                                    let x = Int32(input[((b * h + ih) * w + iw) * c + g * cg + ic]) - inZp
                                    let wv = Int32(weights[((oc * cg + ic) * win.kh + ky) * win.kw + kx])
                                    acc &+= x &* wv
                                }
                            }
                        }
                        out[((b * win.outH + oh) * win.outW + ow) * m + oc] = requantize(
                            acc, mult: mult[oc], offset: offset[oc], outZp, outMin, outMax)
                    }
                }
            }
        }
        return out
    }
}

extension ReferenceKernels {
    /// The float32 sum Σ x[k]·w[k] (+ bias) in the order ONNX Runtime's MLAS kernels use; the specification of the
    /// C float reference (`aads_qref`). `column`/`columns`: the output's position among the Gemm's N outputs, which
    /// decides the final reduction of AADS_SUM_M1_TRANS_B.
    static func mlasSum(
        _ x: [Float], _ w: [Float], order: Int32, kblock: Int, biasFirst: Bool, bias: Float, column: Int = 0,
        columns: Int = 1
    ) -> Float {
        let k = x.count
        switch order {
        case Int32(AADS_SUM_SGEMM):
            var y: Float? = biasFirst ? bias : nil
            let block = kblock > 0 ? kblock : k
            for start in stride(from: 0, to: k, by: block) {
                var part: Float = 0
                for i in start..<min(k, start + block) { part = part.addingProduct(x[i], w[i]) }
                y = y.map { part + $0 } ?? part
            }
            return biasFirst ? (y ?? bias) : (y ?? 0) + bias
        case Int32(AADS_SUM_M1):
            var y: Float? = biasFirst ? bias : nil
            var i = 0
            while i < k {
                let size = k - i >= 4 ? 4 : (k - i) & 2 != 0 ? 2 : 1
                var group = x[i] * w[i]
                for j in 1..<max(1, size) { group = group + x[i + j] * w[i + j] }
                y = y.map { group + $0 } ?? group
                i += size
            }
            return biasFirst ? (y ?? bias) : (y ?? 0) + bias
        default:
            var l = [Float](repeating: 0, count: 8)
            for i in 0..<k { l[i % 8] = l[i % 8] + x[i] * w[i] }
            let full4 = columns / 4 * 4
            let (a, b): (Float, Float)
            if column < full4 {
                a = ((l[0] + l[1]) + l[2]) + l[3]
                b = ((l[4] + l[5]) + l[6]) + l[7]
            } else if (columns - full4) & 2 != 0 && column < full4 + 2 {
                a = (l[0] + l[2]) + (l[4] + l[6])
                b = (l[1] + l[3]) + (l[5] + l[7])
            } else {
                a = (l[0] + l[1]) + (l[2] + l[3])
                b = (l[4] + l[5]) + (l[6] + l[7])
            }
            return (a + b) + bias
        }
    }

    /// `conv` with `Rounding.onnxRuntime`: outputs whose exact value lies within `band` of a rounding boundary take
    /// the float32 value ONNX Runtime computes for the QDQ graph (Conv: im2col order channel, row, column; SGEMM
    /// blocks, or the M = 1 kernel when a group has one filter), quantized as QuantizeLinear does.
    static func convOnnxRuntimeRounding(
        input: [Int8], n: Int, c: Int, h: Int, w: Int, weights: [Int8], m: Int, group: Int, window win: Window,
        inZp: Int32, inScale: Float, weightScales: [Float], bias: [Float], outScale: Float, outZp: Int32,
        outMin: Int32, outMax: Int32, band: Double
    ) -> [Int8] {
        let cg = c / group
        let mg = m / group
        let mult = weightScales.map { Double(inScale) * Double($0) / Double(outScale) }
        let offset = bias.map { Double($0) / Double(outScale) }
        var out = [Int8](repeating: 0, count: n * win.outH * win.outW * m)
        let k = cg * win.kh * win.kw
        let order = Int32(mg == 1 ? AADS_SUM_M1 : AADS_SUM_SGEMM)
        let kblock = mlasStrideK(n: win.outH * win.outW, k: k)
        for b in 0..<n {
            for oh in 0..<win.outH {
                for ow in 0..<win.outW {
                    for oc in 0..<m {
                        let g = oc / mg
                        var acc: Int32 = 0
                        var xs: [Float] = []
                        var ws: [Float] = []
                        for ic in 0..<cg {
                            for ky in 0..<win.kh {
                                for kx in 0..<win.kw {
                                    let ih = oh * win.sh - win.padTop + ky * win.dh
                                    let iw = ow * win.sw - win.padLeft + kx * win.dw
                                    let wv = weights[((oc * cg + ic) * win.kh + ky) * win.kw + kx]
                                    var xq: Int32 = 0
                                    if ih >= 0, ih < h, iw >= 0, iw < w {
                                        xq = Int32(input[((b * h + ih) * w + iw) * c + g * cg + ic]) - inZp
                                    }
                                    acc &+= xq &* Int32(wv)
                                    xs.append(Float(xq) * inScale)
                                    ws.append(Float(wv) * weightScales[oc])
                                }
                            }
                        }
                        let lo = Double(outMin - outZp)
                        let hi = Double(outMax - outZp)
                        let v = min(hi, max(lo, offset[oc].addingProduct(Double(acc), mult[oc])))
                        let index = ((b * win.outH + oh) * win.outW + ow) * m + oc
                        guard abs(v - v.rounded(.toNearestOrEven)) > 0.5 - band else {
                            out[index] = requantize(acc, mult: mult[oc], offset: offset[oc], outZp, outMin, outMax)
                            continue
                        }
                        let y = mlasSum(xs, ws, order: order, kblock: kblock, biasFirst: false, bias: bias[oc])
                        let q = min(Float(hi), max(Float(lo), y / outScale)).rounded(.toNearestOrEven)
                        out[index] = Int8(Int32(q) + outZp)
                    }
                }
            }
        }
        return out
    }
}
