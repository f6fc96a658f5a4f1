from datetime import timedelta

from sqlalchemy.orm import Session

from idp.models import ThrottleCounter
from idp.throttle import Throttle
from kit.clock import FrozenClock


def test_counters_of_every_window_size_count_and_are_purged_together(session: Session) -> None:
    clock = FrozenClock()
    minute, hour = Throttle(window=60), Throttle(window=3600)
    for _ in range(3):
        minute.fail(session, "login:1.2.3.4", clock.now())
    hour.fail(session, "sms:phone:x", clock.now())
    assert minute.failures(session, "login:1.2.3.4", clock.now()) == 3
    assert hour.failures(session, "sms:phone:x", clock.now()) == 1
    clock.advance(61)
    assert minute.failures(session, "login:1.2.3.4", clock.now()) == 0  # a new window
    fresh = clock.now() + timedelta(hours=3)
    minute.fail(session, "login:5.6.7.8", fresh)
    Throttle().purge(session, fresh)
    assert [row.key for row in session.query(ThrottleCounter)] == ["login:5.6.7.8"]
