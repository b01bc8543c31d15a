"""Uses a client generated from herald's OpenAPI document (openapi-python-client, imported as
`client`) against a running herald: create a hook, tick a grid cell, fire a change, page the
deliveries log, retry an event. A document that a generator cannot use, or that does not describe
what herald answers, fails here.

Usage: client_check.py BASE_URL TOKEN DATABASE_FILE
"""
import http.server
import sqlite3
import sys
import threading
import time

from client import AuthenticatedClient
from client.api.hooks import create_hook, tick_grid_cell, get_hook, list_hooks
from client.api.history import list_deliveries, list_hook_events, retry_event
from client.api.catalogue import list_triggers
from client.models import CreateHookIn, DeliveryPage, EventPage, HookOut

base, token, database = sys.argv[1], sys.argv[2], sys.argv[3]
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        received.append((self.headers.get("webhook-id"), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
target = f"http://127.0.0.1:{receiver.server_address[1]}/crm"

api = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def wait(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"client check: {what} did not happen within {seconds} s")


catalogue = list_triggers.sync(client=api)
assert any(r.name == "Deal.create" for r in catalogue.resource_events), catalogue

hook = create_hook.sync(client=api, body=CreateHookIn(target_url=target, company_id=1))
assert isinstance(hook, HookOut), hook
cell = tick_grid_cell.sync_detailed(hook.id, "Deal", "create", client=api)
assert cell.status_code == 200, cell
assert "Deal.create" in get_hook.sync(hook.id, client=api).events
assert any(h.id == hook.id for h in list_hooks.sync(client=api).hooks)

# A change written by the application, as any other process would.
db = sqlite3.connect(database, timeout=30)
with db:
    db.execute("INSERT INTO Deal (title, is_project, company_id) VALUES ('From the generated client', 0, 1)")
wait("the delivery", lambda: received)

page = wait(
    "the deliveries log",
    lambda: (p := list_deliveries.sync(hook.id, client=api, limit=1)) and p.deliveries and p,
)
assert isinstance(page, DeliveryPage)
assert page.deliveries[0].succeeded, page.deliveries[0]

events = list_hook_events.sync(hook.id, client=api)
assert isinstance(events, EventPage) and events.events, events
event = events.events[0]
assert event.status == "delivered", event
retried = retry_event.sync_detailed(hook.id, event.id, client=api)
assert retried.status_code in (200, 202), retried
wait("the retried delivery", lambda: len(received) >= 2)
assert received[0][0] == received[1][0], "a retry keeps the webhook-id"
print(f"client check: ok ({len(received)} deliveries through the generated client)")
