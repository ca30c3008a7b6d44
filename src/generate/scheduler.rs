//! Continuous batching: one scheduler thread per model runs the decoder for the rows of many
//! requests together, a step at a time. A request joins at the next step boundary (its encoder
//! runs then, with every other request that arrived meanwhile), each row keeps its own strategy,
//! processors, seed, stop strings and limits, and a finished or cancelled request leaves at once.
//!
//! The requests that join at one boundary form a *cohort* and take their first step together.
//! Rows at different positions can share a decoder run only when the with-past decoder takes a
//! self-attention mask (`decoder_attention_mask`, added by tools/decoder_mask.py): then, after its
//! first step, every cohort is merged into one batch, the shorter self-attention caches
//! left-padded and the padding masked (T5's relative position bias depends only on the distance
//! between positions, which padding keeps; the graph moves absolute positions back by a row's
//! padding), and padding no row reads any more is dropped as rows leave. Optimum's own graphs
//! take no such mask: there cohorts stay apart and the scheduler steps each in turn, so a request
//! still never waits for another to finish.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::control::Limits;
use super::generation::{check_inputs, outputs, Batch};
use super::output::{FinishReason, Flow, GenerationOutput, Observer, Sequence};
use super::params::GenerationParams;
use super::search::{new_search, Event, RowChange, Search};
use crate::error::{Error, Result};
use crate::model::{EncoderOutput, KvCache, Model};
use crate::text::Encoded;

/// Bounds of one model's scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Most decoder rows (inputs × beams) one decoder run serves: a cohort admits requests, and
    /// cohorts merge, up to it; a larger request runs in a cohort alone.
    pub max_batch_rows: usize,
    /// Most requests waiting or running; beyond it a submission is refused with `Error::Busy`.
    pub max_requests: usize,
}

impl Default for SchedulerOptions {
    /// The model options' defaults.
    fn default() -> Self {
        Self::from_model_options(&crate::model::new_model_options()).unwrap_or(Self { max_batch_rows: 1, max_requests: 1 })
    }
}

impl SchedulerOptions {
    /// The model options' bounds (`crate::model::scheduler_bounds`); `None` when they turn
    /// scheduling off.
    pub fn from_model_options(options: &crate::Settings) -> Option<Self> {
        let (max_batch_rows, max_requests) = crate::model::scheduler_bounds(options)?;
        Some(Self { max_batch_rows, max_requests })
    }
}

/// What the scheduler tells a request's caller.
pub enum Message {
    /// What one step decided (possibly nothing).
    Step(Vec<Event>),
    /// The outputs, or why there are none. The last message.
    Done(Result<Vec<GenerationOutput>>),
}

pub struct Scheduler {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the scheduler did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Decoder runs.
    pub steps: u64,
    /// Decoder runs that served more than one request.
    pub shared_steps: u64,
    /// The most rows one decoder run served.
    pub max_rows: u64,
    /// Times cohorts at different positions were merged into one batch.
    pub merges: u64,
    /// Rows over all decoder runs (`rows / steps` is the mean batch).
    pub rows: u64,
}

struct Shared {
    model: Arc<Model>,
    options: SchedulerOptions,
    stats: Mutex<SchedulerStats>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Requests in cohorts.
    running: usize,
    shutdown: bool,
}

struct Pending {
    inputs: Vec<Encoded>,
    params: GenerationParams,
    link: Link,
}

/// Where a request's messages go: a [`Ticket`]'s channel, or a host's own (an async server's
/// channel, so that no thread waits per request). `deliver` returns false once nobody listens
/// any more; the request is then cancelled at its next step boundary.
pub trait MessageSink: Send + Sync {
    fn deliver(&self, message: Message) -> bool;
}

impl MessageSink for Sender<Message> {
    fn deliver(&self, message: Message) -> bool {
        self.send(message).is_ok()
    }
}

impl<F: Fn(Message) -> bool + Send + Sync> MessageSink for F {
    fn deliver(&self, message: Message) -> bool {
        self(message)
    }
}

/// The scheduler's end of one request.
struct Link {
    /// Its worst-case bytes.
    cost: u64,
    limits: Limits,
    cancel: Arc<AtomicBool>,
    sink: Arc<dyn MessageSink>,
}

impl Link {
    fn send(&self, message: Message) {
        // The caller may have gone (a generator freed early): the request stops at the next
        // boundary, and nothing is left to tell.
        if !self.sink.deliver(message) {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
}

/// Stops a request submitted with [`Scheduler::submit_to`].
#[derive(Clone)]
pub struct Stopper {
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Stopper {
    /// As [`Ticket::cancel`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }
}

/// How many requests a scheduler holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerLoad {
    /// Queued, not yet joined a step boundary.
    pub waiting: usize,
    /// In cohorts, decoding.
    pub running: usize,
}

/// The caller's end of one request.
pub struct Ticket {
    rx: Receiver<Message>,
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
    done: bool,
    /// The request's limits, also checked here: pieces decided before a deadline but not yet
    /// delivered when it passes are not delivered.
    limits: Limits,
}

impl Ticket {
    /// Stops the request at the next step boundary; `Done` then carries what was generated,
    /// with `FinishReason::Cancelled`. Any thread; other requests are not disturbed.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }

    /// Waits for the outputs, telling `observer` every step and piece on this thread. The
    /// observer's `Flow::Stop` cancels the request (the outputs then say `Cancelled`).
    pub fn wait(mut self, mut observer: Option<&mut dyn Observer>) -> Result<Vec<GenerationOutput>> {
        let mut stopped = false;
        let mut limited: Option<Error> = None;
        let mut steps_seen = 0;
        while let Some(message) = self.next() {
            match message {
                Message::Done(result) if stopped => return limited.map_or_else(|| self.cut_to(result, steps_seen), Err),
                Message::Done(result) => return limited.map_or(result, Err),
                Message::Step(_) if stopped || limited.is_some() => {}
                Message::Step(events) => {
                    let Some(observer) = observer.as_deref_mut() else { continue };
                    // The scheduler ends the request with this error at its next boundary.
                    if let Err(e) = self.limits.check() {
                        limited = Some(e);
                        continue;
                    }
                    // A stop from on_step comes before this step's text, as a call decoding alone
                    // hears it before the step: the step does not count. One from on_text does.
                    stopped = observer.on_step() == Flow::Stop;
                    if !stopped {
                        steps_seen += 1;
                    }
                    for event in events {
                        if let (false, Event::Text { input, piece, token }) = (stopped, event) {
                            stopped = observer.on_text(input, &piece, token) == Flow::Stop;
                        }
                    }
                    if stopped {
                        self.cancel();
                    }
                }
            }
        }
        Err(Error::Internal("the scheduler ended a request without an outcome".into()))
    }
}

impl Ticket {
    /// The observer stopped after `steps` steps, but the scheduler may have decoded further
    /// before it heard: the sequences keep the tokens of those steps only, as a call decoding
    /// alone would have, and say `Cancelled`.
    fn cut_to(&self, result: Result<Vec<GenerationOutput>>, steps: usize) -> Result<Vec<GenerationOutput>> {
        let mut outputs = result?;
        for seq in outputs.iter_mut().flat_map(|o| o.sequences.iter_mut()) {
            if seq.finish_reason == FinishReason::Cancelled || seq.token_ids.len() <= steps {
                continue;
            }
            seq.token_ids.truncate(steps);
            seq.token_scores.truncate(steps);
            seq.score = seq.token_scores.iter().sum();
            seq.text = self.shared.model.tokenizer.decode(&seq.token_ids)?;
            seq.finish_reason = FinishReason::Cancelled;
        }
        Ok(outputs)
    }
}

/// The messages of the request, up to and including `Done`.
impl Iterator for Ticket {
    type Item = Message;

    /// The next message; `None` after `Done` was received.
    fn next(&mut self) -> Option<Message> {
        if self.done {
            return None;
        }
        let message = self.rx.recv().unwrap_or_else(|_| Message::Done(Err(Error::Internal("the scheduler stopped".into()))));
        self.done = matches!(message, Message::Done(_));
        Some(message)
    }
}

impl Drop for Ticket {
    /// A request dropped before its end is cancelled, and has left the scheduler (its place
    /// free) when this returns: at most one step's wait.
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
            while self.next().is_some() {}
        }
    }
}

impl Scheduler {
    pub fn new(model: Arc<Model>, options: SchedulerOptions) -> Self {
        let options = SchedulerOptions { max_batch_rows: options.max_batch_rows.max(1), max_requests: options.max_requests.max(1) };
        let shared =
            Arc::new(Shared { model, options, stats: Mutex::default(), state: Mutex::new(State::default()), wake: Condvar::new() });
        Self { shared, thread: Mutex::new(None) }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.shared.model
    }

    pub fn stats(&self) -> SchedulerStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request; it joins the next step boundary. Refused with `Error::Busy` when
    /// `max_requests` are already waiting or running.
    pub fn submit(&self, inputs: Vec<Encoded>, params: &GenerationParams, limits: Limits) -> Result<Ticket> {
        let (tx, rx) = channel();
        let stopper = self.submit_to(inputs, params, limits.clone(), Arc::new(tx))?;
        Ok(Ticket { rx, cancel: stopper.cancel, shared: self.shared.clone(), done: false, limits })
    }

    /// Queues a request whose messages go to `sink`, from the scheduler thread (`sink` must not
    /// block). As [`Self::submit`] otherwise; the last message is `Done`.
    pub fn submit_to(
        &self,
        inputs: Vec<Encoded>,
        params: &GenerationParams,
        limits: Limits,
        sink: Arc<dyn MessageSink>,
    ) -> Result<Stopper> {
        check_inputs(&inputs)?;
        self.shared.model.decoder()?;
        let cost = super::budget::check_budget(&self.shared.model, &inputs, params)?;
        limits.check()?;
        self.start_thread()?;
        let cancel = Arc::new(AtomicBool::new(false));
        let link = Link { cost, limits, cancel: cancel.clone(), sink };
        {
            let mut state = self.shared.lock();
            let load = state.queue.len() + state.running;
            if load >= self.shared.options.max_requests {
                return Err(Error::Busy(format!(
                    "{load} requests are waiting or running on this model (max_requests {})",
                    self.shared.options.max_requests
                )));
            }
            state.queue.push_back(Pending { inputs, params: params.clone(), link });
        }
        self.shared.wake.notify_all();
        Ok(Stopper { cancel, shared: self.shared.clone() })
    }

    pub fn load(&self) -> SchedulerLoad {
        let state = self.shared.lock();
        SchedulerLoad { waiting: state.queue.len(), running: state.running }
    }

    /// Generates through the scheduler and waits, as [`super::generate_encoded`] does alone.
    pub fn generate(
        &self,
        inputs: Vec<Encoded>,
        params: &GenerationParams,
        limits: Limits,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<GenerationOutput>> {
        self.submit(inputs, params, limits)?.wait(observer)
    }

    fn start_thread(&self) -> Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.as_ref().is_none_or(|t| t.is_finished()) {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("duet-scheduler".into())
                .spawn(move || shared.run())
                .map_err(|e| Error::Internal(format!("cannot start the scheduler thread: {e}")))?;
            *thread = Some(handle);
        }
        Ok(())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

/// A request in a cohort.
struct Member {
    search: Box<dyn Search>,
    link: Link,
    inputs: Vec<(usize, bool)>,
    /// Its rows in the cohort's batch.
    rows: usize,
}

/// Requests that joined at one step boundary and decode together.
struct Cohort {
    batch: Batch,
    members: Vec<Member>,
    /// Per row, 1 for each real self-attention position and 0 for padding, when the rows were
    /// merged from cohorts at different positions (`None`: no padding).
    mask: Option<Vec<Vec<i64>>>,
}

impl Cohort {
    fn new(batch: Batch, members: Vec<Member>) -> Self {
        Self { batch, members, mask: None }
    }

    /// Moves rows as `change` says, the mask with them; then drops padding no row reads any more.
    fn apply(&mut self, model: &Model, change: &RowChange) -> Result<()> {
        self.batch.apply(model, change)?;
        let Some(mask) = self.mask.as_mut() else { return Ok(()) };
        if let RowChange::Reorder(index) | RowChange::Select(index) = change {
            *mask = index.iter().map(|&r| mask[r].clone()).collect();
        }
        let unread = mask.iter().map(|row| row.iter().take_while(|&&m| m == 0).count()).min().unwrap_or(0);
        if unread > 0 {
            self.batch.cache.drop_leading(unread)?;
            mask.iter_mut().for_each(|row| drop(row.drain(..unread)));
        }
        if mask.iter().all(|row| row.iter().all(|&m| m == 1)) {
            self.mask = None;
        }
        Ok(())
    }

    /// Several cohorts as one: rows in order, self-attention caches left-padded to the longest,
    /// encoder outputs right-padded, the padding masked; the cohorts back, apart, when they do not stack.
    fn merge(parts: Vec<Cohort>) -> std::result::Result<Cohort, Vec<Cohort>> {
        let self_len = parts.iter().map(|c| c.batch.cache.self_len()).max().unwrap_or(0);
        let encoder = EncoderOutput::concat(&parts.iter().map(|c| &c.batch.encoder).collect::<Vec<_>>());
        let cache =
            encoder.as_ref().ok().map(|e| KvCache::concat(&parts.iter().map(|c| &c.batch.cache).collect::<Vec<_>>(), self_len, e.len));
        let (Ok(encoder), Some(Ok(cache))) = (encoder, cache) else { return Err(parts) };
        let mut mask = Vec::with_capacity(encoder.rows);
        let mut members = Vec::new();
        for part in parts {
            let own = part.batch.cache.self_len();
            let rows = part.members.iter().map(|m| m.rows).sum::<usize>();
            let masks = part.mask.unwrap_or_else(|| vec![vec![1; own]; rows]);
            mask.extend(masks.into_iter().map(|row| std::iter::repeat_n(0, self_len - row.len()).chain(row).collect::<Vec<_>>()));
            members.extend(part.members);
        }
        Ok(Cohort { batch: Batch { encoder, cache }, members, mask: Some(mask) })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut cohorts: Vec<Cohort> = Vec::new();
        loop {
            let joiners = {
                let mut state = self.lock();
                while state.queue.is_empty() && cohorts.is_empty() && !state.shutdown {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.shutdown {
                    for pending in state.queue.drain(..) {
                        pending.link.send(Message::Done(Err(Error::Cancelled)));
                    }
                    for member in cohorts.drain(..).flat_map(|c| c.members) {
                        member.link.send(Message::Done(Err(Error::Cancelled)));
                    }
                    return;
                }
                // Queued requests past their limits (they may wait for memory) end there, with the
                // limit's error as at a step; cancelled ones are admitted below whatever the budget,
                // to end at their first step as any cancelled request does.
                let (stopped, waiting): (VecDeque<Pending>, VecDeque<Pending>) =
                    std::mem::take(&mut state.queue).into_iter().partition(|p| p.link.limits.check().is_err());
                state.queue = waiting;
                for pending in stopped {
                    let error = pending.link.limits.check().err().unwrap_or(Error::Cancelled);
                    pending.link.send(Message::Done(Err(error)));
                }
                // The running requests' worst cases: a queued request starts only while its own
                // fits beside them in the model's memory budget.
                let reserved = cohorts.iter().flat_map(|c| &c.members).map(|m| m.link.cost).sum();
                let joiners = self.admit(&mut state.queue, reserved, cohorts.is_empty());
                state.running += joiners.len();
                joiners
            };
            if !joiners.is_empty() {
                // The joiners' links survive a panic in `form`: their callers hear of it.
                let links: Vec<Arc<dyn MessageSink>> = joiners.iter().map(|p| p.link.sink.clone()).collect();
                match catch_unwind(AssertUnwindSafe(|| self.form(joiners))) {
                    Ok(formed) => cohorts.extend(formed),
                    Err(payload) => {
                        for sink in links {
                            {
                                let mut state = self.lock();
                                state.running = state.running.saturating_sub(1);
                            }
                            sink.deliver(Message::Done(Err(panicked(&payload))));
                        }
                    }
                }
            }
            for cohort in &mut cohorts {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.step(cohort))) {
                    self.fail(cohort, panicked(&payload));
                }
            }
            cohorts.retain(|c| !c.members.is_empty());
            if cohorts.len() > 1 && self.model.decoder().is_ok_and(|d| d.takes_self_mask()) {
                cohorts = self.merge_started(cohorts);
            }
            // Recounted, so that requests lost to a panic mid-step free their places too.
            self.lock().running = cohorts.iter().map(|c| c.members.len()).sum();
        }
    }

    /// Cohorts past their first step merged, in order, into batches of at most `max_batch_rows`
    /// rows (the decoder takes a self-attention mask, so rows at different positions share its
    /// runs); cohorts that do not stack stay apart.
    fn merge_started(&self, cohorts: Vec<Cohort>) -> Vec<Cohort> {
        let (started, fresh): (Vec<Cohort>, Vec<Cohort>) = cohorts.into_iter().partition(|c| !c.batch.cache.is_empty());
        let mut groups: Vec<Vec<Cohort>> = Vec::new();
        let mut rows = 0;
        for cohort in started {
            let own = cohort.batch.encoder.rows;
            match groups.last_mut() {
                Some(group) if rows + own <= self.options.max_batch_rows => {
                    rows += own;
                    group.push(cohort);
                }
                _ => {
                    rows = own;
                    groups.push(vec![cohort]);
                }
            }
        }
        let mut out = Vec::new();
        for group in groups {
            if group.len() < 2 {
                out.extend(group);
                continue;
            }
            match Cohort::merge(group) {
                Ok(merged) => {
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).merges += 1;
                    out.push(merged);
                }
                Err(apart) => out.extend(apart),
            }
        }
        out.extend(fresh);
        out
    }

    /// The queued requests that start a cohort now: in order, while their rows fit
    /// `max_batch_rows` (the first always does), they share the first one's padding token, and
    /// their worst cases fit the memory budget beside the running requests' `reserved` bytes (with
    /// nothing running, the first always does: it was checked alone when submitted).
    fn admit(&self, queue: &mut VecDeque<Pending>, reserved: u64, idle: bool) -> Vec<Pending> {
        let budget = self.model.memory_budget();
        let mut joiners: Vec<Pending> = Vec::new();
        let (mut rows, mut bytes) = (0, reserved);
        while let Some(next) = queue.front() {
            let wanted = next.inputs.len() * next.params.num_beams;
            let cost = if next.link.cancel.load(Ordering::SeqCst) { 0 } else { next.link.cost };
            let in_budget = bytes.saturating_add(cost) <= budget || (idle && joiners.is_empty());
            let fits = in_budget
                && (joiners.is_empty()
                    || (rows + wanted <= self.options.max_batch_rows && next.params.pad_token_id == joiners[0].params.pad_token_id));
            if !fits {
                break;
            }
            rows += wanted;
            bytes = bytes.saturating_add(cost);
            joiners.extend(queue.pop_front());
        }
        joiners
    }

    /// The request's last message; its place is free before its caller hears it.
    fn leave(&self, link: &Link, message: Message) {
        {
            let mut state = self.lock();
            state.running = state.running.saturating_sub(1);
        }
        link.send(message);
    }

    /// Runs the joiners' encoders together and starts their cohort. A joint encoder run that
    /// fails is retried per request, so that one request's error stays its own.
    fn form(&self, joiners: Vec<Pending>) -> Vec<Cohort> {
        let model = &*self.model;
        let ids: Vec<Vec<u32>> = joiners.iter().flat_map(|p| p.inputs.iter().map(|e| e.ids.clone())).collect();
        let pad = joiners[0].params.pad_token_id;
        match model.encoder.run(&ids, pad) {
            Ok(encoder) => {
                let mut members = Vec::with_capacity(joiners.len());
                let mut index = Vec::new();
                let mut first_input = 0;
                for pending in joiners {
                    let search = new_search(&pending.params, pending.inputs.len(), model.vocab_size());
                    let rows = search.encoder_rows().unwrap_or_else(|| (0..pending.inputs.len()).collect());
                    index.extend(rows.iter().map(|r| first_input + r));
                    first_input += pending.inputs.len();
                    members.push(Member {
                        rows: rows.len(),
                        inputs: pending.inputs.iter().map(|e| (e.ids.len(), e.truncated)).collect(),
                        search,
                        link: pending.link,
                    });
                }
                let identity = index.iter().enumerate().all(|(i, &r)| i == r) && index.len() == encoder.rows;
                let encoder = if identity { Ok(encoder) } else { model.decoder().and_then(|d| d.select_encoder_rows(&encoder, &index)) };
                match encoder {
                    Ok(encoder) => vec![Cohort::new(Batch { encoder, cache: KvCache::default() }, members)],
                    Err(e) => {
                        for member in members {
                            self.leave(&member.link, Message::Done(Err(e.clone())));
                        }
                        Vec::new()
                    }
                }
            }
            // Each on its own then: a cohort each (rare, not worth merging their batches).
            Err(_) if joiners.len() > 1 => joiners.into_iter().flat_map(|p| self.form(vec![p])).collect(),
            Err(e) => {
                self.leave(&joiners[0].link, Message::Done(Err(e)));
                Vec::new()
            }
        }
    }

    /// One decoder step for the cohort; members that finish, fail or are cancelled leave.
    fn step(&self, cohort: &mut Cohort) {
        let model = &*self.model;
        let tokenizer = &model.tokenizer;
        // Members stopped from outside leave before the step.
        let mut index = Vec::new();
        let mut offset = 0;
        let mut staying = Vec::with_capacity(cohort.members.len());
        let mut left = false;
        for member in cohort.members.drain(..) {
            // Limits first: a request past its deadline ends with that error even if its caller
            // also stopped listening.
            let outside = match member.link.limits.check() {
                Err(e) => Some(Err(e)),
                Ok(()) => member.link.cancel.load(Ordering::SeqCst).then_some(Ok(())),
            };
            let rows = member.rows;
            match outside {
                None => {
                    index.extend(offset..offset + rows);
                    staying.push(member);
                }
                Some(how) => {
                    left = true;
                    let message = match how {
                        Ok(()) => Message::Done(finish(member.search, tokenizer, true, &member.inputs, None)),
                        Err(e) => Message::Done(Err(e)),
                    };
                    self.leave(&member.link, message);
                }
            }
            offset += rows;
        }
        cohort.members = staying;
        if cohort.members.is_empty() {
            return;
        }
        if left {
            if let Err(e) = cohort.apply(model, &RowChange::Select(index)) {
                return self.fail(cohort, e);
            }
        }

        let tokens: Vec<u32> = cohort.members.iter().flat_map(|m| m.search.next_tokens()).collect();
        {
            let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.steps += 1;
            stats.shared_steps += u64::from(cohort.members.len() > 1);
            stats.max_rows = stats.max_rows.max(tokens.len() as u64);
            stats.rows += tokens.len() as u64;
        }
        let step_mask: Option<Vec<i64>> = cohort.mask.as_ref().map(|m| m.iter().flat_map(|row| row.iter().copied().chain([1])).collect());
        let decoded =
            model.decoder().and_then(|d| d.step_masked(&tokens, &cohort.batch.encoder, &mut cohort.batch.cache, step_mask.as_deref()));
        if let Some(mask) = cohort.mask.as_mut() {
            mask.iter_mut().for_each(|row| row.push(1));
        }
        let mut logits = match decoded {
            Ok(logits) => logits,
            Err(e) => return self.fail(cohort, e),
        };
        let mut index = Vec::with_capacity(tokens.len());
        let (mut select, mut moved) = (false, false);
        let mut first = 0;
        let mut staying = Vec::with_capacity(cohort.members.len());
        for mut member in cohort.members.drain(..) {
            let mut events = Vec::new();
            let change = member.search.advance(tokenizer, &mut logits, first, &mut events);
            let rows_before = member.rows;
            match change {
                Ok(RowChange::Done) => {
                    select = true;
                    let result = finish(member.search, tokenizer, false, &member.inputs, Some(&mut events));
                    member.link.send(Message::Step(events));
                    self.leave(&member.link, Message::Done(result));
                }
                Err(e) => {
                    select = true;
                    self.leave(&member.link, Message::Done(Err(e)));
                }
                Ok(change) => {
                    match &change {
                        RowChange::Same => index.extend(first..first + rows_before),
                        RowChange::Reorder(rows) => {
                            moved = true;
                            index.extend(rows.iter().map(|r| first + r));
                        }
                        RowChange::Select(rows) => {
                            select = true;
                            member.rows = rows.len();
                            index.extend(rows.iter().map(|r| first + r));
                        }
                        RowChange::Done => unreachable!("handled above"),
                    }
                    member.link.send(Message::Step(events));
                    staying.push(member);
                }
            }
            first += rows_before;
        }
        cohort.members = staying;
        if cohort.members.is_empty() {
            return;
        }
        let change = match (select, moved) {
            (true, _) => RowChange::Select(index),
            (false, true) => RowChange::Reorder(index),
            (false, false) => RowChange::Same,
        };
        if let Err(e) = cohort.apply(model, &change) {
            self.fail(cohort, e);
        }
    }

    fn fail(&self, cohort: &mut Cohort, error: Error) {
        for member in cohort.members.drain(..) {
            self.leave(&member.link, Message::Done(Err(error.clone())));
        }
    }
}

/// A panic in the scheduler becomes its requests' error; the scheduler goes on.
fn panicked(payload: &Box<dyn std::any::Any + Send>) -> Error {
    let what = crate::error::panic_message(&**payload);
    Error::Internal(format!("duet panicked in the scheduler: {}", what.unwrap_or_else(|| "unknown panic".into())))
}

fn finish(
    search: Box<dyn Search>,
    tokenizer: &crate::text::Tokenizer,
    cancelled: bool,
    inputs: &[(usize, bool)],
    events: Option<&mut Vec<Event>>,
) -> Result<Vec<GenerationOutput>> {
    let mut sink = Vec::new();
    let sequences: Vec<Vec<Sequence>> = search.finish(tokenizer, cancelled, events.unwrap_or(&mut sink))?;
    Ok(outputs(sequences, inputs))
}
