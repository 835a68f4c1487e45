//! What the recorder asks of the object store, counted: every HTTP request
//! the S3 client sends (retries and multipart parts included), by method, as
//! the Prometheus counter `kubescribe_recorder_object_store_requests_total`.
//! This is what an S3 bill is made of (PUT, POST and LIST requests at one
//! price, GET and HEAD at another).

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::ClientOptions;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A `method` label: `GET`, `PUT`, `POST`, `DELETE`, `HEAD`, or `other`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    /// The HTTP method (a LIST is a `GET` of the bucket).
    method: &'static str,
}

/// Requests sent to the object store, by method (shared by every clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectStoreRequests(Family<MethodLabel, Counter>);

impl ObjectStoreRequests {
    /// Adds the counter to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "object_store_requests",
            "HTTP requests sent to the object store (S3), by method, retries included",
            self.0.clone(),
        );
    }

    fn count(&self, method: &http::Method) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::PUT => "PUT",
            http::Method::POST => "POST",
            http::Method::DELETE => "DELETE",
            http::Method::HEAD => "HEAD",
            _ => "other",
        };
        self.0.get_or_create(&MethodLabel { method }).inc();
    }
}

/// The S3 client's HTTP connector: object_store's own (reqwest), counting.
#[derive(Debug)]
pub(super) struct CountingConnector(pub(super) ObjectStoreRequests);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counting {
            inner,
            requests: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
struct Counting {
    inner: HttpClient,
    requests: ObjectStoreRequests,
}

#[async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.count(req.method());
        self.inner.execute(req).await
    }
}
