import Foundation
import Synchronization
import Testing

@testable import AADSInference

@Suite struct WorkerPoolTests {
    /// Counts how often each chunk ran, from any thread.
    final class Counts: Sendable {
        let slots: Mutex<[Int]>
        init(_ n: Int) { slots = Mutex(Array(repeating: 0, count: n)) }
        func hit(_ i: Int) { slots.withLock { $0[i] += 1 } }
        var values: [Int] { slots.withLock { $0 } }
    }

    /// Job after job, as the layers of a run come, every chunk runs exactly once, on more than one thread.
    @Test func everyChunkOfEveryJobRunsOnce() {
        let names = Mutex<Set<String>>([])
        for job in 0..<2000 {
            let chunks = 1 + job % 7
            let counts = Counts(chunks)
            parallelChunks(chunks, threads: 2 + job % 3) { i in
                counts.hit(i)
                guard job % 100 == 0 else { return }
                let name = "\(pthread_self())"
                names.withLock { _ = $0.insert(name) }
                if i == 0 { usleep(2000) }  // the other threads take the rest meanwhile
            }
            #expect(counts.values == Array(repeating: 1, count: chunks), "job \(job)")
        }
        #expect(names.withLock { $0.count } >= 2, "the chunks all ran on one thread")
    }

    /// The pool runs one job at a time: a chunk that splits its own work is refused by the pool and runs its
    /// chunks through Dispatch, every one of them.
    @Test func nestedJobsRunThroughDispatch() {
        let accepted = Atomic<Int>(0)
        let ranOnPool = WorkerPool.shared.run(chunks: 3, threads: 2) { _ in
            if WorkerPool.shared.run(chunks: 1, threads: 2, { _ in }) { accepted.add(1, ordering: .relaxed) }
        }
        // (false only while another test's model holds the pool)
        if ranOnPool { #expect(accepted.load(ordering: .relaxed) == 0) }
        let outer = Counts(4)
        let inner = Counts(4 * 5)
        parallelChunks(4, threads: 2) { i in
            outer.hit(i)
            parallelChunks(5, threads: 2) { j in inner.hit(i * 5 + j) }
        }
        #expect(outer.values == Array(repeating: 1, count: 4))
        #expect(inner.values == Array(repeating: 1, count: 20))
    }

    /// Several threads splitting work at once (several models running): all of it runs, once.
    @Test func concurrentCallersAllFinish() {
        let counts = Counts(8 * 300 * 3)
        DispatchQueue.concurrentPerform(iterations: 8) { caller in
            for job in 0..<300 {
                parallelChunks(3, threads: 2) { i in counts.hit((caller * 300 + job) * 3 + i) }
            }
        }
        #expect(counts.values.allSatisfy { $0 == 1 })
    }
}
