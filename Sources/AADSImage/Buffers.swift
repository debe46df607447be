/// A heap buffer of a trivial element type that only grows: reused across images so that a decode loop
/// allocates nothing once the largest image has been seen.
final class GrowableBuffer<Element: BitwiseCopyable> {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity: Int
    /// How many times the buffer was (re)allocated; lets tests check that a loop stops allocating.
    private(set) var allocations = 0

    init() {
        capacity = 0
        pointer = UnsafeMutablePointer<Element>.allocate(capacity: 1)
    }

    deinit { pointer.deallocate() }

    /// At least `count` elements (contents are not preserved when it grows).
    @discardableResult
    func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            pointer.deallocate()
            pointer = UnsafeMutablePointer<Element>.allocate(capacity: count)
            capacity = count
            allocations += 1
        }
        return pointer
    }

    /// At least `count` elements, keeping the first `keeping` elements.
    func grow(to count: Int, keeping: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            let fresh = UnsafeMutablePointer<Element>.allocate(capacity: count)
            fresh.initialize(from: pointer, count: min(keeping, capacity))
            pointer.deallocate()
            pointer = fresh
            capacity = count
            allocations += 1
        }
        return pointer
    }
}
