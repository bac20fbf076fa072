use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use serde_json::Value;

use crate::driver::{ApiCall, ApiValue, DomainEvent, MigrateRequest, Milestone, Side, VirError};
use crate::engine::{api_result_text, EngineError, Incoming, Transport};
use crate::transcript::{ApiRecord, Header, Record, Transcript};

/// Wraps a transport and writes every line the engine consumed or sent, in that order.
#[derive(Debug)]
pub struct Recorder<T: Transport> {
    inner: T,
    out: BufWriter<File>,
    start: Instant,
}

impl<T: Transport> Recorder<T> {
    pub fn new(inner: T, file: File, header: &Header, start: Instant) -> std::io::Result<Self> {
        let mut out = BufWriter::new(file);
        writeln!(out, "{}", Transcript::header_line(header))?;
        Ok(Recorder { inner, out, start })
    }

    /// Continues a transcript with a further migrate call (opened for appending).
    pub fn append(
        inner: T,
        file: File,
        req: &MigrateRequest,
        start: Instant,
    ) -> std::io::Result<Self> {
        let mut r = Recorder {
            inner,
            out: BufWriter::new(file),
            start,
        };
        let t = r.t();
        r.write(&Record::migrate(t, req))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(r)
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn t(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn write(&mut self, rec: &Record) -> Result<(), EngineError> {
        let line = serde_json::to_string(rec)
            .map_err(|e| EngineError::transport("cannot encode a transcript record", e))?;
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| EngineError::transport("cannot write the transcript", e))
    }

    /// Records an API call made outside a migration (before it, after it), with its result.
    pub fn record_idle_api(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        let t = self.t();
        self.write(&Record::Api {
            t,
            api: ApiRecord::from_call(call),
        })?;
        self.write(&Record::ApiReturn {
            t,
            call: call.name().into(),
            result: api_result_text(result),
        })
    }

    /// The same recording, now around another transport.
    pub fn rewrap<U: Transport>(self, inner: U) -> Recorder<U> {
        Recorder {
            inner,
            out: self.out,
            start: self.start,
        }
    }
}

impl<T: Transport> Transport for Recorder<T> {
    fn next(&mut self) -> Result<Incoming, EngineError> {
        let inc = self.inner.next()?;
        let t = self.t();
        match &inc {
            Incoming::Line { side, line } => {
                let msg: Value =
                    serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.clone()));
                self.write(&Record::Recv {
                    t,
                    mon: (*side).into(),
                    msg,
                })?;
            }
            Incoming::Api(call) => self.write(&Record::Api {
                t,
                api: ApiRecord::from_call(call),
            })?,
            Incoming::Closed { side, reason } => self.write(&Record::Closed {
                t,
                mon: (*side).into(),
                reason: reason.clone(),
            })?,
            Incoming::Note(text) => self.write(&Record::Note {
                t,
                text: text.clone(),
            })?,
            Incoming::Tick => self.write(&Record::Tick { t })?,
            Incoming::Deadline { limit } => self.write(&Record::Note {
                t,
                text: postcopy_core::transcript::deadline_note(*limit),
            })?,
            Incoming::End => {}
        }
        Ok(inc)
    }

    fn send(&mut self, side: Side, line: &str) -> Result<(), EngineError> {
        self.inner.send(side, line)?;
        let msg: Value = serde_json::from_str(line)
            .map_err(|e| EngineError::transport("shim sent invalid JSON", e))?;
        let t = self.t();
        self.write(&Record::Send {
            t,
            mon: side.into(),
            msg,
        })
    }

    fn api_return(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        let t = self.t();
        self.write(&Record::ApiReturn {
            t,
            call: call.name().into(),
            result: api_result_text(result),
        })?;
        self.inner.api_return(call, result)
    }

    fn stop_qemu(&mut self, side: Side) {
        self.inner.stop_qemu(side)
    }

    fn domain_event(&mut self, side: Side, event: &DomainEvent) {
        self.inner.domain_event(side, event)
    }

    fn milestone(&mut self, milestone: &Milestone) {
        self.inner.milestone(milestone)
    }

    fn warn(&mut self, message: &str) {
        self.inner.warn(message)
    }

    fn finished(&mut self) -> bool {
        self.inner.finished()
    }
}
