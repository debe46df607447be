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
