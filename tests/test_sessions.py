"""faucet.sessions: the pure decisions behind Shiny sessions that survive reconnects."""

import uuid

import pytest

from faucet.pool.backend import Backend
from faucet.pool.balancer import least_loaded
from faucet.proxy.shiny.sessions import (
    DUPLICATE,
    SESSION_HEADER,
    SHUTTING_DOWN,
    WORKER_GONE,
    Budget,
    Outbox,
    Refused,
    Registry,
    Reservation,
    SessionState,
    client_closed,
    config_token,
    full_page,
    greediest,
    path_token,
    place,
    resume_params,
    with_session_id,
    worker_closed,
    worker_session_id,
)
from tests.helpers import make_backends, set_online

SID = uuid.UUID("0b8f4c7e-8c1e-4a57-9f49-5d2f2f8f5e11")
HTML = [(b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8")]


class Held:
    """A live session as the registry holds it (faucet.session_host's has more)."""

    def __init__(self, backend: Backend, session_id: uuid.UUID = SID):
        self.state = SessionState(session_id, backend, Outbox(Budget(1000)), True)
        self.reservation = None


def hold(registry: Registry, backend: Backend, session_id: uuid.UUID = SID) -> Held:
    """A session reserved and opened on ``backend``, as session_host does it."""
    held = Held(backend, session_id)
    held.reservation = registry.reserve(session_id, backend)
    registry.add(held, held.reservation)
    return held


def backends(*sessions: int, online: bool = True) -> list[Backend]:
    out = make_backends(len(sessions), online)
    for backend, count in zip(out, sessions, strict=True):
        for _ in range(count):
            backend.session_opened()
    return out


def test_resume_params_read_the_scripts_query_and_reject_anything_else():
    query = f"sessionId={SID}&attempt=2&received=17".encode()
    params = resume_params(query)
    assert (params.session_id, params.attempt, params.received) == (SID, 2, 17)
    assert resume_params(f"SESSIONID={SID}&ATTEMPT=0".encode()).received == 0  # Rust's script
    for bad in (b"", b"attempt=1", b"sessionId=nope&attempt=0",
                f"sessionId={SID}&attempt=x".encode(), f"sessionId={SID}&received=-1".encode()):
        assert resume_params(bad) is None


def test_outbox_numbers_messages_and_drops_them_once_acknowledged():
    budget = Budget(100)
    outbox = Outbox(budget)
    for text in ("one", "two", b"three"):
        outbox.append(text)
    assert (outbox.last, outbox.size, budget.used) == (3, 11, 11)
    assert outbox.get(2) == "two" and outbox.get(3) == b"three"
    outbox.ack(2)
    assert (outbox.acked, outbox.last, outbox.size, budget.used) == (2, 3, 5, 5)
    assert outbox.get(3) == b"three"
    assert [outbox.holds_after(n) for n in (1, 2, 3, 4)] == [False, True, True, False]
    outbox.ack(2)  # an old acknowledgement again changes nothing
    assert outbox.last == 3 and budget.used == 5


def test_outbox_bounds_each_session_and_all_together_but_always_takes_one_message():
    budget = Budget(10)
    first, second = Outbox(budget), Outbox(budget)
    assert first.admits(50, limit=8)  # empty: any one message
    first.append("x" * 6)
    assert first.admits(2, limit=8) and not first.admits(3, limit=8)
    second.append("y" * 3)
    assert not first.admits(2, limit=8)  # 6 + 3 + 2 > 10 together
    second.release()
    assert budget.used == 6 and first.admits(2, limit=8)
    assert second.get(1) == "yyy"  # still readable for a leg delivering it
    second.ack(1)
    assert budget.used == 6  # released once, not again on acknowledgement


def test_fewest_sessions_places_evenly_below_the_limit_and_skips_offline_workers():
    pool = backends(2, 1, 1)
    pool[1].lease(slow=True)
    assert least_loaded(pool) is pool[2]  # equal sessions: fewer in flight
    set_online(pool[2], False)
    assert least_loaded(pool) is pool[1]
    assert least_loaded(pool, limit=1) is None  # every online worker is full
    assert least_loaded(backends(0, 0, online=False)) is None


def test_a_reservation_counts_a_session_being_opened_until_released_once():
    pool = backends(0, 0)
    registry = Registry()
    reservation = registry.reserve(SID, pool[0])
    assert isinstance(reservation, Reservation) and least_loaded(pool) is pool[1]
    reservation.release()
    reservation.release()
    assert pool[0].sessions == 0 and len(registry) == 0


def test_an_id_open_or_being_opened_is_refused_and_counted_once():
    """Two new sessions with one id at once: the second is refused, so no count is lost
    (the registry used to keep one of the two and neither's end uncounted it)."""
    pool = backends(0, 0)
    registry = Registry()
    first = registry.reserve(SID, pool[0])
    assert registry.reserve(SID, pool[1]) is DUPLICATE
    assert registry.get(SID) is None  # not live yet: nothing to resume
    held = Held(pool[0])
    registry.add(held, first)
    first.release()  # the opening connection is done; the session holds the count
    assert registry.get(SID) is held and pool[0].sessions == 1
    assert registry.reserve(SID, pool[1]) is DUPLICATE
    registry.remove(held, first)
    assert [b.sessions for b in pool] == [0, 0] and registry.get(SID) is None
    assert isinstance(registry.reserve(SID, pool[1]), Reservation)


def test_one_client_address_holds_at_most_its_share_of_sessions():
    pool = backends(0, 0)
    registry = Registry(per_client=2)
    mine = [registry.reserve(uuid.uuid4(), pool[0], "10.0.0.1") for _ in range(2)]
    refused = registry.reserve(uuid.uuid4(), pool[0], "10.0.0.1")
    assert isinstance(refused, Refused) and refused.status == 503
    assert isinstance(registry.reserve(uuid.uuid4(), pool[0], "10.0.0.2"), Reservation)
    mine[0].release()
    assert isinstance(registry.reserve(uuid.uuid4(), pool[1], "10.0.0.1"), Reservation)


def test_a_new_websocket_opens_a_session_on_the_emptiest_worker():
    pool = backends(3, 1)
    query = f"sessionId={SID}&attempt=0&received=0".encode()
    registry = Registry()
    placement = place(registry, pool, None, websocket=True, method="GET",
                      path=b"/websocket/", query=query, headers=[])
    assert placement.backend is pool[1] and placement.opens and placement.resumable
    assert placement.key == SID
    assert placement.session_id == worker_session_id(registry.secret, SID) != SID
    plain = place(Registry(), pool, None, websocket=True, method="GET", path=b"/websocket/",
                  query=b"", headers=[])
    assert plain.opens and not plain.resumable and plain.session_id not in (None, SID)


def test_a_new_session_goes_where_the_clients_cookie_points_while_that_worker_has_room():
    """A browser that carries a sticky cookie comes back to its worker (R may cache its
    data there); without one, or when that worker is full or down, the emptiest one."""
    pool = backends(3, 1)
    new = {"websocket": True, "method": "GET", "path": b"/websocket/", "query": b"",
           "headers": []}
    assert place(Registry(), pool, None, preferred=pool[0], **new).backend is pool[0]
    assert place(Registry(), pool, 3, preferred=pool[0], **new).backend is pool[1]  # full
    set_online(pool[0], False)
    assert place(Registry(), pool, None, preferred=pool[0], **new).backend is pool[1]


def test_a_reconnect_resumes_its_session_or_is_told_it_is_gone():
    pool = backends(0, 0)
    registry = Registry()
    held = hold(registry, pool[1])
    assert pool[1].sessions == 1
    query = f"sessionId={SID}&attempt=3&received=9".encode()
    placement = place(registry, pool, 1, websocket=True, method="GET", path=b"/websocket/",
                      query=query, headers=[])
    assert (placement.session, placement.backend, placement.received) == (held, pool[1], 9)
    registry.remove(held, held.reservation)
    assert pool[1].sessions == 0
    gone = place(registry, pool, 1, websocket=True, method="GET", path=b"/websocket/",
                 query=query, headers=[])
    assert gone.refusal == "gone" and gone.backend is None
    # attempt 0 with an id faucet does not know: the page's first connection
    first = place(registry, pool, 1, websocket=True, method="GET", path=b"/websocket/",
                  query=f"sessionId={SID}&attempt=0".encode(), headers=[])
    assert first.opens and first.backend is pool[0]


def test_full_workers_refuse_new_sessions_and_page_loads_but_not_other_requests():
    pool = backends(2, 2)
    for websocket, method, headers in ((True, "GET", []), (False, "GET", HTML)):
        placement = place(Registry(), pool, 2, websocket=websocket, method=method,
                          path=b"/", query=b"", headers=headers)
        assert placement.refusal == "full"
    for method, headers in (("GET", []), ("POST", HTML)):  # assets, a form's post
        assert place(Registry(), pool, 2, websocket=False, method=method, path=b"/x.js",
                     query=b"", headers=headers).refusal is None
    set_online(pool[0], False)
    set_online(pool[1], False)  # none online: the strategy waits for one, no refusal
    assert place(Registry(), pool, 2, websocket=True, method="GET", path=b"/",
                 query=b"", headers=[]).refusal is None
    page = full_page(10)
    assert b"All sessions are in use" in page and b'content="10"' in page


def test_requests_bound_to_a_session_by_shinys_token_go_to_its_worker():
    pool = backends(0, 0)
    registry = Registry()
    held = hold(registry, pool[1])
    registry.bind_token(held, "a6dd23b648c390da912be05f32cf6ebd")
    for path in (b"/session/a6dd23b648c390da912be05f32cf6ebd/download/report?w=",
                 b"/app/session/a6dd23b648c390da912be05f32cf6ebd/upload/1"):
        placement = place(registry, pool, None, websocket=False, method="POST", path=path,
                          query=b"", headers=[])
        assert (placement.backend, placement.session_id) == (pool[1], SID)
    assert place(registry, pool, None, websocket=False, method="GET",
                 path=b"/session/ffffffffffffffffffffffffffffffff/download/x", query=b"",
                 headers=[]).backend is None
    registry.remove(held, held.reservation)
    assert registry.by_token("a6dd23b648c390da912be05f32cf6ebd") is None


def test_shinys_token_is_read_from_its_first_message_and_its_paths():
    assert config_token('{"config":{"workerId":"","sessionId":"ab12cd","user":null}}') == "ab12cd"
    for other in ('{"values":{}}', b'{"config":{}}', '{"config":', '{"config":{"sessionId":7}}'):
        assert config_token(other) is None
    assert path_token(b"/session/0123456789abcdef0123/dataobj/t?w=") == "0123456789abcdef0123"
    assert path_token(b"/mysession/0123456789abcdef0123/x") is None
    assert path_token(b"/session/short/x") is None


def test_the_session_header_is_faucets_whatever_the_client_sent():
    headers = [(b"x-a", b"1"), (b"faucet_session_id", b"forged"), (b"Faucet-Session-Id", b"f")]
    assert with_session_id(headers, SID) == [(b"x-a", b"1"), (SESSION_HEADER, str(SID).encode())]
    assert with_session_id(headers, None) == [(b"x-a", b"1")]


@pytest.mark.parametrize(("code", "sent"), [(1000, 1000), (4321, 4321), (1005, 1000),
                                            (1006, 1001)])
def test_closes_cross_as_codes_a_close_frame_may_carry(code, sent):
    assert client_closed(code, "r").worker[0] == sent
    assert worker_closed(code, "r").client[0] == sent



def test_clients_without_the_script_get_the_close_codes_any_client_knows():
    assert WORKER_GONE.client_close(True)[0] == 4002  # the script reloads the page
    assert WORKER_GONE.client_close(False) == (1011, "the worker went away")
    assert SHUTTING_DOWN.client_close(True)[0] == 1012  # the script waits for faucet
    assert SHUTTING_DOWN.client_close(False) == (1001, "faucet is shutting down")
    assert worker_closed(4321, "bye").client_close(False) == (4321, "bye")


def test_the_session_holding_the_most_of_the_shared_budget_is_the_one_to_end():
    budget = Budget(100)
    pool = backends(0)
    states = [SessionState(uuid.uuid4(), pool[0], Outbox(budget), True) for _ in range(3)]
    for state, size in zip(states, (10, 70, 20), strict=True):
        state.outbox.append("x" * size)
    asking = states[2]
    assert asking.outbox.shared_budget_short(1) and not states[0].outbox.shared_budget_short(0)
    assert greediest(states, asking) is states[1]
    assert greediest(states, states[1]) is None  # the greediest waits for its own client
    states[1].outbox.release()
    assert greediest(states, asking) is None and budget.used == 30


def test_the_id_r_sees_is_derived_from_the_clients_and_a_secret_the_client_lacks():
    """R's FAUCET_SESSION_ID is no client's choice, not even all zeros; it is the same for
    every connection of a session, and another faucet process derives another."""
    zeros = uuid.UUID(int=0)
    one, other = Registry(), Registry()
    derived = worker_session_id(one.secret, zeros)
    assert derived != zeros and derived.version == 4
    assert worker_session_id(one.secret, zeros) == derived
    assert worker_session_id(other.secret, zeros) != derived
    assert worker_session_id(one.secret, SID) != derived
