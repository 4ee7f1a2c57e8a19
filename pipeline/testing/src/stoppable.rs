//! An HTTP double's server that can go down and come back on the same port, as a peer that
//! restarts does: what the doubles' `stop` and `restart` share.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a graceful stop may take before the server's task is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A server's task, and the signal that shuts it down gracefully: open connections are closed
/// (as a stopping peer closes them, so none keeps answering) and the port refuses new ones.
pub(crate) struct StoppableServer {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl StoppableServer {
    /// Serves `router` on `listener` in a task of the current runtime.
    pub(crate) fn serve(listener: TcpListener, router: Router) -> Self {
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await;
        });
        Self { shutdown, task }
    }

    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        if tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Ends serving at once (for `Drop`, which cannot wait).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// Binds `address` with `SO_REUSEADDR`, so that a restart on the same port is not held off by
/// the closed connections' `TIME_WAIT`.
pub(crate) fn bind_reusable(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}
