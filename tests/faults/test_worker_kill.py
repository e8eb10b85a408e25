"""A Celery worker SIGKILLed mid-burst (tests/integration/sales/test_queue.py kills one
that holds a batch; this one dies while buyers are still buying, then the books are
audited end to end)."""

from tests.faults.burst import Burst
from tests.faults.burst import plan


def test_worker_sigkill_mid_burst(stack, record_figures):
    """Purchases never notice; what the dead worker held is re-driven; nothing is lost."""
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40)).start()
    burst.wait_progress(0.3)
    for worker in stack.live_workers():
        stack.kill_worker(worker)  # the worker, its pool process and its beat
    burst.wait_progress(0.6)
    stack.start_worker()
    answers = burst.join()
    figures = stack.audit.audit(sale, answers)
    assert not figures.server_errors, "admission does not need a worker"
    record_figures(figures)
