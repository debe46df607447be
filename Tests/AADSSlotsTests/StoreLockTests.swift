import AADSSlots
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct StoreLockTests {
    /// An operation waiting for a lock that is never released fails after the timeout with a clear error.
    @Test func aHeldLockTimesOutWithAClearError() throws {
        let root = tempDirectory("lock")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var options = SlotStoreOptions()
        options.lockTimeoutSeconds = 0.3
        let store = SlotStore(root: root, options: options)
        let fd = open(root + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        #expect(flock(fd, LOCK_EX) == 0)
        let finished = DispatchSemaphore(value: 0)
        let box = ErrorBox()
        Thread {
            do { _ = try store.activate() } catch { box.error = error as? SlotError }
            finished.signal()
        }.start()
        let answered = finished.wait(timeout: .now() + 10) == .success
        close(fd)
        guard answered else {
            Issue.record("the store waited for ever on a held lock")
            finished.wait()
            return
        }
        #expect(box.error?.code == "io_error")
        #expect(box.error?.message.contains("locked by another process") == true)
        // Released, the same operation gets past the lock (and finds nothing installed).
        let after = #expect(throws: SlotError.self) { _ = try store.activate() }
        #expect(after?.code == "no_active_slot")
    }
}
