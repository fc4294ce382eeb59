//! A simulated host's executor: runs a user's async program, and the tasks it spawns, as one of the host's applications, in virtual time, with the host's stack behind its sockets.
//!
//! The world calls [`Program::act`] whenever the host's stack was polled (a frame arrived, a
//! timer of the stack or of the program fell due). An act makes the host's stack and the
//! current virtual time reachable from the sockets and timers of this crate through a
//! thread-local context, wakes every task waiting for a socket (readiness can only change
//! when the stack was polled, and every act follows a poll) and every task whose sleep is due,
//! then polls the woken tasks until none is woken any more. Nothing here reads the wall
//! clock or spawns a thread: a program's run is as deterministic as the stacks under it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use sim::apps::{App, AppReport};
use stack::{SocketError, Stack};

/// What a program returns: `Ok` when it did what it set out to, or the error that stopped it.
pub type ProgramResult = Result<(), Box<dyn std::error::Error>>;

/// A boxed program or spawned task.
type Task = Pin<Box<dyn Future<Output = ()>>>;

/// How often the tasks woken within one act are polled again before the act ends (a task
/// that keeps waking itself would otherwise hold virtual time still).
const MAX_ROUNDS_PER_ACT: u32 = 1024;

/// How a program ended, as a run reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramEnd {
    /// Still running when the run ended (a server, or a client the run stopped).
    Running,
    /// Returned `Ok(())`.
    Finished {
        /// When, in virtual time.
        at_us: u64,
    },
    /// Returned an error.
    Failed {
        /// When, in virtual time.
        at_us: u64,
        /// The error, as it displays.
        error: String,
    },
    /// Panicked (the program or one of its spawned tasks).
    Panicked {
        /// When, in virtual time.
        at_us: u64,
        /// The panic's message.
        message: String,
    },
}

/// One program's account of a run: its host, its role and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramOutcome {
    /// The host the program ran on.
    pub host: String,
    /// True for a client: the run lasts until every client has ended.
    pub client: bool,
    /// How it ended.
    pub end: ProgramEnd,
}

/// The names of the simulation's hosts and their addresses, for [`crate::net::lookup`].
pub(crate) type Names = BTreeMap<String, Vec<IpAddr>>;

/// What the sockets and timers of a host's tasks reach during an act.
pub(crate) struct HostContext {
    pub(crate) host: String,
    pub(crate) host_index: usize,
    /// The host's own addresses, IPv4 first.
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) names: Rc<Names>,
    /// The host's stack, set for the duration of an act only.
    stack: Cell<Option<*mut (dyn Stack + 'static)>>,
    now_us: Cell<u64>,
    /// Set by socket calls that change what the stack will send, so that the world polls the
    /// stack again in the same instant.
    changed_stack: Cell<bool>,
    /// Tasks waiting for a socket: woken at the start of every act.
    io_waiters: RefCell<Vec<Waker>>,
    /// Sleeping tasks by deadline (and a sequence number, to keep equal deadlines apart).
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    next_timer: Cell<u64>,
    spawned: RefCell<Vec<Task>>,
    /// A stack panic caught inside a socket call: re-raised outside the task so that the world
    /// reports it as the stack's, not the program's.
    stack_panic: RefCell<Option<Box<dyn std::any::Any + Send>>>,
    next_ephemeral_port: Cell<u16>,
}

thread_local! {
    static CURRENT: Cell<Option<*const HostContext>> = const { Cell::new(None) };
}

/// Runs `f` with the context of the host whose program is being polled.
///
/// # Panics
///
/// Outside a simulated host's program (the sockets and timers of this crate only work inside
/// the programs given to [`crate::Sim`]).
pub(crate) fn with_context<R>(f: impl FnOnce(&HostContext) -> R) -> R {
    let context = CURRENT.with(Cell::get).expect(
        "wirelab::net and wirelab::time work only inside a program that runs on a simulated \
         host (one given to Sim::builder().host or .client)",
    );
    // SAFETY: CURRENT is set only while `Program::act` holds the `Rc` it points into, and is
    // cleared before that act returns.
    f(unsafe { &*context })
}

/// Whether the caller runs inside a host's program.
pub(crate) fn in_context() -> bool {
    CURRENT.with(Cell::get).is_some()
}

impl HostContext {
    /// The current virtual time.
    pub(crate) fn now_us(&self) -> u64 {
        self.now_us.get()
    }

    /// Calls the host's stack. `changes` says whether the call may change what the stack
    /// sends (the world then polls it again at once).
    pub(crate) fn stack<R>(
        &self,
        changes: bool,
        call: impl FnOnce(&mut dyn Stack) -> Result<R, SocketError>,
    ) -> Result<R, SocketError> {
        let stack = self
            .stack
            .take()
            .expect("the host's stack is reachable during an act, and calls do not nest");
        // SAFETY: the pointer was made from the `&mut dyn Stack` of the running act, which
        // outlives this call; taking it out of the cell keeps the borrow unique.
        let result = panic::catch_unwind(AssertUnwindSafe(|| call(unsafe { &mut *stack })));
        self.stack.set(Some(stack));
        if changes {
            self.changed_stack.set(true);
        }
        match result {
            Ok(result) => result,
            Err(payload) => {
                // The program's task is unwound with a marker; the act re-raises the stack's own
                // panic once it is outside the task.
                *self.stack_panic.borrow_mut() = Some(payload);
                panic::resume_unwind(Box::new(StackPanicked));
            }
        }
    }

    /// Says that the stack has something new to send (the receive window opened, data was
    /// queued), so that the world polls it again in the same instant.
    pub(crate) fn note_stack_changed(&self) {
        self.changed_stack.set(true);
    }

    /// Parks the current task until the next act (the stack was polled).
    pub(crate) fn wait_for_io(&self, waker: &Waker) {
        self.io_waiters.borrow_mut().push(waker.clone());
    }

    /// Parks the current task until `deadline_us`. `registration` is what an earlier call for
    /// the same sleep returned: its entry is reused, so that a sleep polled at every act holds
    /// one entry, not one per poll. Returns the registration.
    pub(crate) fn wait_until(
        &self,
        deadline_us: u64,
        registration: Option<u64>,
        waker: &Waker,
    ) -> u64 {
        let mut timers = self.timers.borrow_mut();
        if let Some(seq) = registration {
            if let Some(entry) = timers.get_mut(&(deadline_us, seq)) {
                entry.clone_from(waker);
                return seq;
            }
        }
        let seq = self.next_timer.get();
        self.next_timer.set(seq + 1);
        timers.insert((deadline_us, seq), waker.clone());
        seq
    }

    /// Forgets a sleep's entry (the sleep was dropped before its deadline).
    pub(crate) fn cancel_timer(&self, deadline_us: u64, registration: u64) {
        self.timers
            .borrow_mut()
            .remove(&(deadline_us, registration));
    }

    pub(crate) fn spawn(&self, task: Task) {
        self.spawned.borrow_mut().push(task);
    }

    /// A free port from the dynamic range (RFC 6335), in a fixed order.
    pub(crate) fn next_ephemeral_port(&self) -> u16 {
        let port = self.next_ephemeral_port.get();
        self.next_ephemeral_port
            .set(if port == u16::MAX { 49152 } else { port + 1 });
        port
    }
}

/// The marker a task unwinds with when the stack under one of its socket calls panicked.
struct StackPanicked;

/// A task's wake-up flag.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct TaskSlot {
    future: Task,
    flag: Arc<Flag>,
    waker: Waker,
}

impl TaskSlot {
    fn new(future: Task) -> TaskSlot {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        TaskSlot {
            future,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

/// A user's program on one host: the application the world runs, and the executor of the
/// program's tasks.
pub(crate) struct Program {
    context: Rc<HostContext>,
    /// The program itself first; spawned tasks after it, in the order they were spawned.
    tasks: Vec<Option<TaskSlot>>,
    client: bool,
    /// Set by the main task when it returns.
    main_result: Rc<RefCell<Option<ProgramResult>>>,
    outcome: Rc<RefCell<ProgramOutcome>>,
    report: AppReport,
}

impl Program {
    pub(crate) fn new(
        host: String,
        host_index: usize,
        addresses: Vec<IpAddr>,
        names: Rc<Names>,
        client: bool,
        program: Pin<Box<dyn Future<Output = ProgramResult>>>,
        outcome: Rc<RefCell<ProgramOutcome>>,
    ) -> Program {
        let main_result = Rc::new(RefCell::new(None));
        let result_slot = main_result.clone();
        let main: Task = Box::pin(async move {
            let result = program.await;
            *result_slot.borrow_mut() = Some(result);
        });
        Program {
            report: AppReport {
                host: host.clone(),
                kind: if client {
                    "client program"
                } else {
                    "host program"
                },
                ..AppReport::default()
            },
            context: Rc::new(HostContext {
                host,
                host_index,
                addresses,
                names,
                stack: Cell::new(None),
                now_us: Cell::new(0),
                changed_stack: Cell::new(false),
                io_waiters: RefCell::new(Vec::new()),
                timers: RefCell::new(BTreeMap::new()),
                next_timer: Cell::new(0),
                spawned: RefCell::new(Vec::new()),
                stack_panic: RefCell::new(None),
                next_ephemeral_port: Cell::new(49152),
            }),
            tasks: vec![Some(TaskSlot::new(main))],
            client,
            main_result,
            outcome,
        }
    }

    fn ended(&self) -> bool {
        self.outcome.borrow().end != ProgramEnd::Running
    }

    fn end(&mut self, end: ProgramEnd) {
        if self.ended() {
            return;
        }
        match &end {
            ProgramEnd::Finished { at_us } => self.report.done_at_us = Some(*at_us),
            ProgramEnd::Failed { at_us, error } => {
                self.report.done_at_us = Some(*at_us);
                self.report.errors.push((*at_us, error.clone()));
            }
            ProgramEnd::Panicked { at_us, message } => {
                self.report.done_at_us = Some(*at_us);
                self.report
                    .errors
                    .push((*at_us, format!("the program panicked: {message}")));
            }
            ProgramEnd::Running => {}
        }
        self.outcome.borrow_mut().end = end;
        // An ended program's tasks end with it, and their sockets close.
        self.tasks.clear();
    }

    /// Polls every woken task until none is woken; returns whether a task is still woken.
    fn poll_tasks(&mut self, now_us: u64) -> bool {
        for _ in 0..MAX_ROUNDS_PER_ACT {
            let mut polled_any = false;
            let mut index = 0;
            while index < self.tasks.len() {
                let Some(slot) = self.tasks[index].as_mut() else {
                    index += 1;
                    continue;
                };
                if !slot.flag.0.swap(false, Ordering::Relaxed) {
                    index += 1;
                    continue;
                }
                polled_any = true;
                let waker = slot.waker.clone();
                let mut cx = Context::from_waker(&waker);
                let polled =
                    panic::catch_unwind(AssertUnwindSafe(|| slot.future.as_mut().poll(&mut cx)));
                match polled {
                    Ok(Poll::Pending) => {}
                    Ok(Poll::Ready(())) => self.tasks[index] = None,
                    Err(payload) => {
                        if payload.is::<StackPanicked>() {
                            let stack_panic = self.context.stack_panic.borrow_mut().take();
                            panic::resume_unwind(stack_panic.unwrap_or(payload));
                        }
                        let message = sim::world::panic_message(payload.as_ref());
                        self.end(ProgramEnd::Panicked {
                            at_us: now_us,
                            message,
                        });
                        return false;
                    }
                }
                if index == 0 {
                    let result = self.main_result.borrow_mut().take();
                    if let Some(result) = result {
                        let end = match result {
                            Ok(()) => ProgramEnd::Finished { at_us: now_us },
                            Err(error) => ProgramEnd::Failed {
                                at_us: now_us,
                                error: error.to_string(),
                            },
                        };
                        self.end(end);
                        return false;
                    }
                }
                let spawned = std::mem::take(&mut *self.context.spawned.borrow_mut());
                self.tasks
                    .extend(spawned.into_iter().map(|t| Some(TaskSlot::new(t))));
                index += 1;
            }
            if !polled_any {
                return false;
            }
        }
        true
    }
}

/// Clears the thread-local context when an act ends, also by a panic.
struct ContextGuard<'a>(&'a HostContext);

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        self.0.stack.set(None);
        CURRENT.with(|c| c.set(None));
    }
}

impl App for Program {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        if self.ended() {
            return false;
        }
        let context = self.context.clone();
        // SAFETY: only the lifetime is erased; the guard below removes the pointer before
        // this act, which holds the borrow, returns.
        let stack: *mut (dyn Stack + 'static) = unsafe { std::mem::transmute(stack) };
        context.stack.set(Some(stack));
        context.now_us.set(now_us);
        context.changed_stack.set(false);
        CURRENT.with(|c| c.set(Some(Rc::as_ptr(&context))));
        let _guard = ContextGuard(&context);

        for waker in context.io_waiters.borrow_mut().drain(..) {
            waker.wake();
        }
        loop {
            let mut timers = context.timers.borrow_mut();
            let Some(entry) = timers.first_entry() else {
                break;
            };
            if entry.key().0 > now_us {
                break;
            }
            entry.remove().wake();
        }
        let still_woken = self.poll_tasks(now_us);
        // A task that keeps itself woken gets the next act at once.
        context.changed_stack.get() || still_woken
    }

    fn wake_at(&self) -> Option<u64> {
        if self.ended() {
            return None;
        }
        self.context
            .timers
            .borrow()
            .first_key_value()
            .map(|((deadline_us, _), _)| *deadline_us)
    }

    fn done(&self) -> bool {
        !self.client || self.ended()
    }

    fn report(&mut self) -> &AppReport {
        &self.report
    }
}

/// Spawns a task on the current host, as `tokio::task::spawn_local` does; it runs until it
/// ends or its program ends.
///
/// # Panics
///
/// Outside a program on a simulated host.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        waker: None,
    }));
    let task_state = state.clone();
    with_context(|context| {
        context.spawn(Box::pin(async move {
            let output = future.await;
            let mut state = task_state.borrow_mut();
            state.output = Some(output);
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }))
    });
    JoinHandle { state }
}

struct JoinState<T> {
    output: Option<T>,
    waker: Option<Waker>,
}

/// Awaits a spawned task's output. Dropping it lets the task run on, detached.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Lets the other woken tasks of the host run before this one goes on, within the same
/// instant of virtual time.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
