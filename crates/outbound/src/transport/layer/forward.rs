//! [`Layer`]: the one forwarding core. A layer names the transport it wraps and writes only
//! the [`Transport`] methods it changes; every other method goes to the wrapped transport
//! through the provided methods here, and one generic impl makes every layer a `Transport`.
//!
//! Cost: none beyond what `async_trait` already does. The generic impl hands the layer's own
//! future back as the transport's (no second box), and a method a layer does not write hands
//! back the wrapped transport's future itself.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::message::PreparedMessage;
use crate::{Error, Message, Receipt, Transport};

/// The future `async_trait` makes of an async trait method.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Behaviour around one wrapped transport. Implement it instead of [`Transport`]: name the
/// wrapped transport ([`inner`](Layer::inner)) and write only the methods the layer changes
/// (with `#[async_trait]`, as for `Transport`); every type that implements `Layer` is a
/// `Transport` whose other methods forward to the wrapped one.
///
/// The methods have [`Transport`]'s names and meanings. Where both traits are in scope, call
/// a layer's methods as `Transport::send(&layer, …)` (or import only `Transport`, as users of
/// a layer do).
///
/// ```
/// use async_trait::async_trait;
/// use outbound::message::PreparedMessage;
/// use outbound::{Error, Message, Receipt, Transport, dev::MemoryTransport};
///
/// /// Counts the messages that went through.
/// #[derive(Debug)]
/// struct Counted<T> {
///     inner: T,
///     sent: std::sync::atomic::AtomicUsize,
/// }
///
/// #[async_trait]
/// impl<T: Transport> outbound::layer::Layer for Counted<T> {
///     type Inner = T;
///
///     fn inner(&self) -> &T {
///         &self.inner
///     }
///
///     // The only method this layer changes; prepare, verify, close, kind, describe and
///     // size_limit are the memory transport's.
///     async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
///         let receipt = self.inner.send_prepared(message).await?;
///         self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         Ok(receipt)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outbound::Error> {
/// let t = Counted { inner: MemoryTransport::new(), sent: Default::default() };
/// let msg = Message::builder().from("a@example.com").to("b@example.com").text("hi").build()?;
/// t.send(&msg).await?;
/// assert_eq!(t.sent.load(std::sync::atomic::Ordering::Relaxed), 1);
/// assert_eq!((t.kind(), t.describe()), ("memory", "memory".to_string()));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Layer: Send + Sync + fmt::Debug {
    /// The transport this layer wraps.
    type Inner: Transport + ?Sized;

    /// The wrapped transport: every method the layer does not write goes to it.
    fn inner(&self) -> &Self::Inner;

    /// [`Transport::send`]: by default this layer's [`prepare`](Layer::prepare), then its
    /// [`send_prepared`](Layer::send_prepared), as for any transport.
    async fn send(&self, message: &Message) -> Result<Receipt, Error> {
        let prepared = Layer::prepare(self, message)?;
        Layer::send_prepared(self, &prepared).await
    }

    /// [`Transport::send_prepared`]: by default the wrapped transport's.
    fn send_prepared<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 PreparedMessage,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner().send_prepared(message)
    }

    /// [`Transport::prepare`]: by default the wrapped transport's, so the outermost caller
    /// prepares once, with the sender the innermost layer that knows one decides.
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        self.inner().prepare(message)
    }

    /// [`Transport::verify`]: by default the wrapped transport's.
    fn verify<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, Result<(), Error>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner().verify()
    }

    /// [`Transport::close`]: by default the wrapped transport's, so an `Arc<dyn Transport>`
    /// can shut its pools down through any stack of layers.
    fn close<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner().close()
    }

    /// [`Transport::size_limit`]: by default the wrapped transport's.
    fn size_limit(&self) -> Option<u64> {
        self.inner().size_limit()
    }

    /// [`Transport::kind`]: by default the wrapped transport's.
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }

    /// [`Transport::describe`]: by default the wrapped transport's.
    fn describe(&self) -> String {
        self.inner().describe()
    }
}

/// Every layer is a transport: each method is the layer's own, whose default is the wrapped
/// transport's. The futures are handed on as they are, never boxed again.
impl<L: Layer> Transport for L {
    fn send<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 Message,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Layer::send(self, message)
    }

    fn send_prepared<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 PreparedMessage,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Layer::send_prepared(self, message)
    }

    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        Layer::prepare(self, message)
    }

    fn verify<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, Result<(), Error>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Layer::verify(self)
    }

    fn close<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Layer::close(self)
    }

    fn size_limit(&self) -> Option<u64> {
        Layer::size_limit(self)
    }

    fn kind(&self) -> &'static str {
        Layer::kind(self)
    }

    fn describe(&self) -> String {
        Layer::describe(self)
    }
}

/// A shared transport is the shared one: every method, `send` included, hands back its
/// future as it is. (`Arc` is a plain `Transport`, not a [`Layer`], so that a layer holding an
/// `Arc<dyn Transport>` can call its methods with both traits in scope.)
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 Message,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).send(message)
    }

    fn send_prepared<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 PreparedMessage,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).send_prepared(message)
    }

    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        (**self).prepare(message)
    }

    fn verify<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, Result<(), Error>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        (**self).verify()
    }

    fn close<'life0, 'async_trait>(&'life0 self) -> BoxFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        (**self).close()
    }

    fn size_limit(&self) -> Option<u64> {
        (**self).size_limit()
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A boxed transport is the thinnest layer: everything, `send` included, is the boxed one's.
/// (A `Layer` rather than a plain `Transport` as `Arc` is: `Box` is a fundamental type, so a
/// second impl of `Transport` for it would overlap the one for every layer.)
impl<T: Transport + ?Sized> Layer for Box<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        self
    }

    fn send<'life0, 'life1, 'async_trait>(
        &'life0 self,
        message: &'life1 Message,
    ) -> BoxFuture<'async_trait, Result<Receipt, Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).send(message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::{message, prepared, Scripted};
    use super::*;
    use crate::ErrorKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Writes nothing but `inner`: everything is the wrapped transport's.
    #[derive(Debug)]
    struct Nothing<T>(T);

    impl<T: Transport> Layer for Nothing<T> {
        type Inner = T;
        fn inner(&self) -> &T {
            &self.0
        }
    }

    /// A transport with its own `send` and its own answers to everything else.
    #[derive(Debug, Default)]
    struct Own {
        sends: AtomicUsize,
        closes: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Own {
        async fn send(&self, _: &Message) -> Result<Receipt, Error> {
            self.sends.fetch_add(1, Ordering::Relaxed);
            Ok(Receipt::new("own", "<own@example.com>", vec![]))
        }
        async fn send_prepared(&self, _: &PreparedMessage) -> Result<Receipt, Error> {
            Err(Error::new(ErrorKind::Permanent, "send_prepared"))
        }
        fn prepare(&self, _: &Message) -> Result<PreparedMessage, Error> {
            Err(Error::config("prepare"))
        }
        async fn verify(&self) -> Result<(), Error> {
            Err(Error::new(ErrorKind::Auth, "verify"))
        }
        async fn close(&self) {
            self.closes.fetch_add(1, Ordering::Relaxed);
        }
        fn size_limit(&self) -> Option<u64> {
            Some(42)
        }
        fn kind(&self) -> &'static str {
            "own"
        }
        fn describe(&self) -> String {
            "own://here".into()
        }
    }

    #[tokio::test]
    async fn a_layer_that_writes_nothing_is_its_inner_transport() {
        let t = Nothing(Own::default());
        let t: &dyn Transport = &t;
        assert_eq!(
            t.send_prepared(&prepared()).await.unwrap_err().message(),
            "send_prepared"
        );
        assert_eq!(t.prepare(&message()).unwrap_err().message(), "prepare");
        assert_eq!(t.verify().await.unwrap_err().kind(), ErrorKind::Auth);
        t.close().await;
        assert_eq!(
            (t.size_limit(), t.kind(), t.describe()),
            (Some(42), "own", "own://here".to_string())
        );
        // `send` is the layer's own: prepare, then send_prepared, both forwarded.
        assert_eq!(t.send(&message()).await.unwrap_err().message(), "prepare");
    }

    #[tokio::test]
    async fn shared_and_boxed_transports_forward_everything_even_send() {
        let own = Arc::new(Own::default());
        let boxed: Box<dyn Transport> = Box::new(own.clone());
        for t in [&own as &dyn Transport, &*boxed] {
            assert_eq!(t.send(&message()).await.unwrap().transport, "own");
            assert_eq!(t.verify().await.unwrap_err().kind(), ErrorKind::Auth);
            t.close().await;
            assert_eq!((t.kind(), t.size_limit()), ("own", Some(42)));
        }
        assert_eq!(own.sends.load(Ordering::Relaxed), 2);
        assert_eq!(own.closes.load(Ordering::Relaxed), 2);
        // With `Layer` in scope (as here), an `Arc`'s methods are still just `Transport`'s.
        assert_eq!(own.describe(), "own://here");
        own.close().await;
        assert_eq!(own.closes.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn close_and_send_reach_through_a_stack_of_layers() {
        let own = Arc::new(Own::default());
        let inner: Arc<dyn Transport> = own.clone();
        let t = Nothing(Nothing(inner));
        Transport::close(&t).await;
        assert_eq!(own.closes.load(Ordering::Relaxed), 1);
        let scripted = Scripted::default();
        let t = Nothing(Nothing(scripted.clone()));
        Transport::send(&t, &message()).await.unwrap();
        assert_eq!(scripted.len(), 1);
    }
}
