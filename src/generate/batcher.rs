//! Dynamic batching: requests that arrive together on one model (within `batch_window_ms`) with
//! the same parameters share their encoder and decoder runs, so that many host threads get the
//! throughput of one large batch from one copy of the weights. Each request still gets exactly
//! its own outputs. Only calls without an observer take part (streaming callbacks stay on the
//! calling thread), and only deterministic ones (not sampling).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{generate_encoded, GenerationOutput, GenerationParams};
use crate::error::Result;
use crate::model::Model;
use crate::text::Encoded;

pub struct Batcher {
    /// Runs that served more than one call.
    shared_runs: std::sync::atomic::AtomicUsize,
    window: Duration,
    max_inputs: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: Vec<Open>,
    done: HashMap<u64, Done>,
}

struct Open {
    id: u64,
    params: GenerationParams,
    inputs: Vec<Encoded>,
    members: usize,
}

struct Done {
    /// None when the shared run failed: each member then runs alone to get its own error.
    outputs: Option<Vec<GenerationOutput>>,
    waiting: usize,
}

impl Batcher {
    pub fn new(window: Duration, max_inputs: usize) -> Self {
        Self {
            shared_runs: Default::default(),
            window,
            max_inputs: max_inputs.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// How many runs so far were shared by several calls.
    pub fn shared_runs(&self) -> usize {
        self.shared_runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn run(&self, model: &Model, inputs: &[Encoded], params: &GenerationParams) -> Result<Vec<GenerationOutput>> {
        if inputs.len() >= self.max_inputs {
            return generate_encoded(model, inputs, params, None);
        }
        let mut st = self.lock();
        let joinable = st.open.iter_mut().find(|o| o.params == *params && o.inputs.len() + inputs.len() <= self.max_inputs);
        if let Some(open) = joinable {
            let (id, offset) = (open.id, open.inputs.len());
            open.inputs.extend_from_slice(inputs);
            open.members += 1;
            self.changed.notify_all();
            return self.follow(st, id, offset, model, inputs, params);
        }
        let id = st.next_id;
        st.next_id += 1;
        st.open.push(Open { id, params: params.clone(), inputs: inputs.to_vec(), members: 1 });
        let until = Instant::now() + self.window;
        loop {
            let full = st.open.iter().find(|o| o.id == id).is_some_and(|o| o.inputs.len() >= self.max_inputs);
            let now = Instant::now();
            if full || now >= until {
                break;
            }
            st = self.changed.wait_timeout(st, until - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        let at = st.open.iter().position(|o| o.id == id).unwrap_or(0);
        let batch = st.open.swap_remove(at);
        drop(st);

        let result = generate_encoded(model, &batch.inputs, params, None);
        if batch.members > 1 {
            self.shared_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let outputs = result.as_ref().ok().cloned();
            self.lock().done.insert(id, Done { outputs, waiting: batch.members - 1 });
            self.changed.notify_all();
        }
        result.map(|mut all| {
            all.truncate(inputs.len());
            all
        })
    }

    fn follow(
        &self,
        mut st: MutexGuard<'_, State>,
        id: u64,
        offset: usize,
        model: &Model,
        inputs: &[Encoded],
        params: &GenerationParams,
    ) -> Result<Vec<GenerationOutput>> {
        loop {
            if let Some(done) = st.done.get_mut(&id) {
                let mine = done.outputs.as_ref().map(|all| all[offset..offset + inputs.len()].to_vec());
                done.waiting -= 1;
                if done.waiting == 0 {
                    st.done.remove(&id);
                }
                drop(st);
                return match mine {
                    Some(outputs) => Ok(outputs),
                    None => generate_encoded(model, inputs, params, None),
                };
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}
