import CKernels
import Foundation
import Synchronization

/// The threads that run the chunks of `parallelFor` beside the calling thread. They are started once and, after
/// each job, keep polling for the next one for a short while before they sleep, so that the next layer of the
/// same inference starts without waking a sleeping thread (which takes about as long as a small layer).
/// ONNX Runtime's and XNNPACK's thread pools work the same way.
///
/// One job runs at a time. A caller that finds the pool busy (another model running on another thread, or a
/// chunk asking for threads of its own) gets `false` from `run` and splits its work some other way.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long an idle worker keeps polling before it sleeps.
    static let spinNanoseconds: UInt64 = 500_000

    private let busy = Atomic<Bool>(false)
    /// The current job as one word, so that a chunk is claimed with one compare-and-swap that also checks the job:
    /// epoch (bits 32-63, one per job) | chunks (bits 16-31) | next unclaimed chunk (bits 0-15).
    private let state = Atomic<Int>(0)
    /// Chunks of the current job that have finished.
    private let done = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let wake = NSCondition()
    /// The current job's body: written by the caller before it publishes the job in `state`, read by a thread only
    /// after it has claimed a chunk of that job, which the caller waits for.
    private var job: UnsafePointer<(Int) -> Void>?
    /// Changed only by a caller holding `busy`.
    private var epoch = 0
    private var workers = 0

    /// Runs `body(i)` for every i in 0..<chunks on this thread and (at least `threads` - 1) workers, and returns
    /// when all are done; false (having run nothing) when the pool is busy.
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) -> Bool {
        guard chunks < 1 << 16, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else { return false }
        defer { busy.store(false, ordering: .releasing) }
        while workers < threads - 1 { startWorker() }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { job in
                self.job = job
                done.store(0, ordering: .relaxed)
                epoch = (epoch + 1) & 0xFFFF_FFFF
                state.store(epoch << 32 | chunks << 16, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    wake.lock()
                    wake.broadcast()
                    wake.unlock()
                }
                runChunks(of: epoch)
                // Chunks claimed by workers may still be running; a worker the system has not scheduled yet gets
                // the processor through the yields.
                var polls = 0
                while done.load(ordering: .acquiring) < chunks {
                    aads_spin_pause()
                    polls += 1
                    if polls % 1024 == 0 { sched_yield() }
                }
                self.job = nil
            }
        }
        return true
    }

    /// Claims and runs chunks of job `epoch` until none is left (or another job has begun).
    private func runChunks(of epoch: Int) {
        var s = state.load(ordering: .acquiring)
        while s >> 32 == epoch && s & 0xFFFF < (s >> 16) & 0xFFFF {
            let (claimed, now) = state.compareExchange(
                expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
            if claimed {
                job.unsafelyUnwrapped.pointee(s & 0xFFFF)
                done.add(1, ordering: .releasing)
                s = state.load(ordering: .acquiring)
            } else {
                s = now
            }
        }
    }

    private func startWorker() {
        workers += 1
        let thread = Thread { [self] in self.work() }
        thread.stackSize = 1 << 20
        thread.name = "aads-inference"
        thread.start()
    }

    private func work() -> Never {
        var seen = state.load(ordering: .acquiring) >> 32
        while true {
            seen = waitForJob(after: seen)
            runChunks(of: seen)
        }
    }

    /// Polls for a job other than `seen` for `spinNanoseconds`, then sleeps until there is one; returns its epoch.
    private func waitForJob(after seen: Int) -> Int {
        let start = DispatchTime.now().uptimeNanoseconds
        var polls = 0
        while true {
            let e = state.load(ordering: .acquiring) >> 32
            if e != seen { return e }
            aads_spin_pause()
            polls += 1
            if polls % 256 == 0 && DispatchTime.now().uptimeNanoseconds - start > Self.spinNanoseconds { break }
        }
        wake.lock()
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while state.load(ordering: .sequentiallyConsistent) >> 32 == seen { wake.wait() }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        wake.unlock()
        return state.load(ordering: .acquiring) >> 32
    }
}
