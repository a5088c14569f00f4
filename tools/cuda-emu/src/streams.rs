//! Streams and events, in one of two modes (`CUDA_EMU_STREAMS`):
//!
//! - `eager` (the default): every operation runs when it is enqueued, on the calling thread.
//!   The order is the host's, one of the orders a GPU may choose.
//! - `deferred`: operations wait in their stream's queue, and run only when something needs
//!   them: a synchronisation, a copy to the host, an event wait that another stream reaches,
//!   or a random step at each enqueue, which runs the next operation of a random stream
//!   (seeded by `CUDA_EMU_SEED`). Independent streams then interleave in an order the host
//!   did not choose; the only order kept is the one CUDA promises: within a stream, across
//!   `cuEventRecord`/`cuStreamWaitEvent`, and the legacy default stream's implicit
//!   synchronisation with blocking streams. Code that uses a buffer on one stream before the
//!   stream that writes it is made to wait computes other numbers here, which the tests that
//!   compare against the CPU see.
//!
//! Copies from the host read their source at enqueue time (the driver stages pageable memory
//! before it returns); copies to the host and the synchronous `_v2` calls first run everything
//! they depend on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Work for a stream. It runs with the stream state's lock held: it must not call back into
/// this module.
pub type Job = Box<dyn FnOnce() + Send>;

enum Op {
    Run(Job),
    /// Do not go on before `stream` has finished its first `upto` operations.
    Wait {
        stream: usize,
        upto: u64,
    },
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<Op>,
    /// Operations enqueued and finished so far (Waits included).
    enqueued: u64,
    done: u64,
    /// Created without CU_STREAM_NON_BLOCKING: synchronises implicitly with stream 0.
    blocking: bool,
}

#[derive(Default)]
struct State {
    queues: HashMap<usize, Queue>,
    /// Each event's mark: (stream, operations enqueued on it when the event was recorded).
    events: HashMap<usize, (usize, u64)>,
    rng: u64,
}

/// The legacy default stream (a null `CUstream`).
pub const LEGACY: usize = 0;

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Whether operations are deferred (`CUDA_EMU_STREAMS=deferred`).
pub fn deferred() -> bool {
    static MODE: OnceLock<bool> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("CUDA_EMU_STREAMS").as_deref() {
        Ok("deferred") => true,
        Ok("eager") | Err(_) => false,
        Ok(other) => crate::fault::die(&format!(
            "CUDA_EMU_STREAMS={other}: expected `eager` or `deferred`"
        )),
    })
}

fn state() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = state();
    let st = guard.get_or_insert_with(|| State {
        rng: std::env::var("CUDA_EMU_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            | 1,
        ..State::default()
    });
    st.queues.entry(LEGACY).or_default();
    f(st)
}

impl State {
    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn push(&mut self, stream: usize, op: Op) {
        let q = self.queues.entry(stream).or_default();
        q.ops.push_back(op);
        q.enqueued += 1;
    }

    /// Runs stream `s`'s next operation (and first whatever it waits for).
    fn run_one(&mut self, s: usize) -> bool {
        let Some(op) = self.queues.get_mut(&s).and_then(|q| q.ops.pop_front()) else {
            return false;
        };
        match op {
            Op::Run(job) => job(),
            Op::Wait { stream, upto } => self.run_until(stream, upto),
        }
        if let Some(q) = self.queues.get_mut(&s) {
            q.done += 1;
        }
        true
    }

    fn run_until(&mut self, s: usize, upto: u64) {
        while self.queues.get(&s).is_some_and(|q| q.done < upto) {
            if !self.run_one(s) {
                break;
            }
        }
    }

    fn drain(&mut self, s: usize) {
        while self.run_one(s) {}
    }

    /// A random stream among those with work waiting (streams in a fixed order, so the seed
    /// alone decides), or none.
    fn random_busy(&mut self) -> Option<usize> {
        let mut busy: Vec<usize> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.ops.is_empty())
            .map(|(&s, _)| s)
            .collect();
        if busy.is_empty() {
            return None;
        }
        busy.sort_unstable();
        Some(busy[(self.next_random() % busy.len() as u64) as usize])
    }

    /// Drains every stream, in a random order of streams.
    fn drain_all(&mut self) {
        while let Some(pick) = self.random_busy() {
            self.run_one(pick);
        }
    }

    /// One random step: the next operation of a random stream that has one, half the time.
    fn random_step(&mut self) {
        if self.next_random() % 2 == 0 {
            return;
        }
        if let Some(pick) = self.random_busy() {
            self.run_one(pick);
        }
    }
}

/// A new stream's queue.
pub fn create(stream: usize, non_blocking: bool) {
    with(|st| {
        st.queues.insert(
            stream,
            Queue {
                blocking: !non_blocking,
                ..Queue::default()
            },
        );
    });
}

/// Destroys a stream: its pending work runs first (as the driver finishes it).
pub fn destroy(stream: usize) {
    with(|st| {
        st.drain(stream);
        st.queues.remove(&stream);
    });
}

/// Enqueues `job` on `stream` (runs it now in eager mode).
pub fn submit(stream: usize, job: Job) {
    if !deferred() {
        job();
        return;
    }
    with(|st| {
        // The legacy stream waits for every blocking stream's earlier work, and a blocking
        // stream for the legacy stream's.
        if stream == LEGACY {
            let marks: Vec<(usize, u64)> = st
                .queues
                .iter()
                .filter(|(s, q)| **s != LEGACY && q.blocking && q.done < q.enqueued)
                .map(|(&s, q)| (s, q.enqueued))
                .collect();
            for (s, upto) in marks {
                st.push(LEGACY, Op::Wait { stream: s, upto });
            }
        } else if st.queues.get(&stream).is_some_and(|q| q.blocking) {
            let upto = st.queues[&LEGACY].enqueued;
            st.push(
                stream,
                Op::Wait {
                    stream: LEGACY,
                    upto,
                },
            );
        }
        st.push(stream, Op::Run(job));
        st.random_step();
    });
}

/// Runs everything `stream` has been given (`cuStreamSynchronize`, copies to the host).
pub fn synchronize(stream: usize) {
    if deferred() {
        with(|st| {
            if stream == LEGACY {
                // The legacy stream also waits for the blocking streams.
                let blocking: Vec<usize> = st
                    .queues
                    .iter()
                    .filter(|(_, q)| q.blocking)
                    .map(|(&s, _)| s)
                    .collect();
                for s in blocking {
                    st.drain(s);
                }
            }
            st.drain(stream);
        });
    }
}

/// Runs everything (`cuCtxSynchronize`, the synchronous `_v2` calls, frees).
pub fn synchronize_all() {
    if deferred() {
        with(State::drain_all);
    }
}

/// `cuEventRecord`: the event marks `stream`'s work so far.
pub fn record(event: usize, stream: usize) {
    if deferred() {
        with(|st| {
            let upto = st.queues.entry(stream).or_default().enqueued;
            st.events.insert(event, (stream, upto));
        });
    }
}

/// `cuStreamWaitEvent`: `stream`'s later work waits for the event's mark.
pub fn wait(stream: usize, event: usize) {
    if deferred() {
        with(|st| {
            if let Some(&(s, upto)) = st.events.get(&event) {
                st.push(stream, Op::Wait { stream: s, upto });
            }
        });
    }
}

/// `cuEventSynchronize`/`cuEventQuery`: the event's mark is reached.
pub fn reach(event: usize) {
    if deferred() {
        with(|st| {
            if let Some(&(s, upto)) = st.events.get(&event) {
                st.run_until(s, upto);
            }
        });
    }
}

/// Forgets a destroyed event.
pub fn forget(event: usize) {
    if deferred() {
        with(|st| {
            st.events.remove(&event);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Records the order jobs ran in, on a private set of stream ids.
    #[test]
    fn deferred_work_keeps_stream_and_event_order() {
        // The mode is read once per process; drive the state directly.
        let log = Arc::new(Mutex::new(Vec::new()));
        let job = |tag: u32| {
            let log = log.clone();
            Op::Run(Box::new(move || log.lock().unwrap().push(tag)))
        };
        let mut st = State {
            rng: 7,
            ..State::default()
        };
        let (a, b) = (1001, 1002);
        st.push(a, job(1));
        st.push(a, job(2));
        let mark = st.queues[&a].enqueued;
        st.push(
            b,
            Op::Wait {
                stream: a,
                upto: mark,
            },
        );
        st.push(b, job(3));
        st.push(a, job(4));
        st.drain(b);
        // b's job ran after a's first two and before a's third
        assert_eq!(*log.lock().unwrap(), [1, 2, 3]);
        st.drain_all();
        assert_eq!(*log.lock().unwrap(), [1, 2, 3, 4]);
    }
}
