/// Small pixel conversions of the decode path.
enum PixelOps {
    /// CMYK (as libjpeg delivers it, i.e. the stored component values) to RGB, in place: `count` pixels of
    /// 4 bytes become `count` pixels of 3 bytes at the start of the buffer.
    ///
    /// This is Pillow's conversion: its JPEG plugin always reads 4-component files with the Adobe
    /// (inverted) polarity (`CMYK;I`, so C = 255 − stored), and `convert("RGB")` computes
    /// `R = clip(nk − nk·C/255)` with `nk = 255 − K` and its rounding `MULDIV255`. With the inversion
    /// folded in, nk is the stored K value.
    static func cmykToRGBInPlace(_ buffer: UnsafeMutablePointer<UInt8>, count: Int) {
        @inline(__always) func muldiv255(_ a: Int, _ b: Int) -> Int {
            let t = a * b + 128
            return ((t >> 8) + t) >> 8
        }
        for i in 0..<count {
            let source = buffer + 4 * i
            let c = 255 - Int(source[0])
            let m = 255 - Int(source[1])
            let y = 255 - Int(source[2])
            let nk = Int(source[3])
            let r = nk - muldiv255(c, nk)
            let g = nk - muldiv255(m, nk)
            let b = nk - muldiv255(y, nk)
            // Pixel i is read completely before it is written, and writes (3i...3i+2) never reach
            // the bytes of later pixels (4i+4 and above), so working in place is safe.
            let target = buffer + 3 * i
            target[0] = UInt8(clamping: r)
            target[1] = UInt8(clamping: g)
            target[2] = UInt8(clamping: b)
        }
    }

    /// Copies a `side × side` image from stored to display orientation (EXIF values 1...8), expanding
    /// 1-channel input to RGB.
    ///
    /// Display pixel (x, y) comes from stored pixel:
    /// 1 (x, y) · 2 (n−1−x, y) · 3 (n−1−x, n−1−y) · 4 (x, n−1−y) · 5 (y, x) · 6 (y, n−1−x) ·
    /// 7 (n−1−y, n−1−x) · 8 (n−1−y, x), with n = side.
    static func orient(
        _ source: UnsafePointer<UInt8>, side n: Int, channels: Int, orientation: Int,
        into destination: UnsafeMutablePointer<UInt8>
    ) {
        for y in 0..<n {
            for x in 0..<n {
                let sx: Int
                let sy: Int
                switch orientation {
                case 2: (sx, sy) = (n - 1 - x, y)
                case 3: (sx, sy) = (n - 1 - x, n - 1 - y)
                case 4: (sx, sy) = (x, n - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, n - 1 - x)
                case 7: (sx, sy) = (n - 1 - y, n - 1 - x)
                case 8: (sx, sy) = (n - 1 - y, x)
                default: (sx, sy) = (x, y)
                }
                let from = source + (sy * n + sx) * channels
                let to = destination + (y * n + x) * 3
                if channels == 1 {
                    to[0] = from[0]
                    to[1] = from[0]
                    to[2] = from[0]
                } else {
                    to[0] = from[0]
                    to[1] = from[1]
                    to[2] = from[2]
                }
            }
        }
    }
}
