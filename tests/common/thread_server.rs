//! A test server's thread: bind a free 127.0.0.1 port, run the server's accept loop on its own thread and
//! current-thread tokio runtime, stop when told (dropping the runtime cancels connections still being served).

use std::future::Future;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running server thread: its port, and what stops it.
pub struct ServerThread {
    pub port: u16,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Bind and start `serve` on a thread named `name`.
    pub fn spawn<F, Fut>(name: &str, serve: F) -> ServerThread
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a test server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = serve(listener) => {}
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn a test server thread");
        ServerThread { port, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Stop the server and wait for its thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
