"""Server-Sent Events for broker runs in a FastAPI app."""

from fastapi import FastAPI, Request, Response

from broker import RunBroker
from broker.sse import sse_response

broker = RunBroker()  # worker threads call broker.emit(run_id, event), then broker.close(run_id)
app = FastAPI()


@app.get("/runs/{run_id}/events")
async def run_events(request: Request, run_id: str) -> Response:
    # Resumes after the Last-Event-ID header (or ?last_event_id=N); a malformed one gets a 400.
    return sse_response(request, broker, run_id)
