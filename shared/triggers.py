"""The non-HTTP triggers as function_app.py binds them: host types in, plain calls out. The
Service Bus message becomes a JobMessage here, so shared/jobs/ never sees a Functions type."""

from __future__ import annotations

import azure.functions as func

from .backups import run_backup_check
from .composition.services import Services
from .examples.feedback_loop import run_feedback_pass
from .jobs.message import JobMessage, str_props


def job_message(msg: func.ServiceBusMessage) -> JobMessage:
    return JobMessage(
        body=msg.get_body(),
        message_id=str(msg.message_id),
        delivery_count=int(msg.delivery_count or 1),
        reply_to=msg.reply_to,
        properties=str_props(msg.application_properties or msg.user_properties),
    )


async def on_job_message(msg: func.ServiceBusMessage, services: Services) -> None:
    """Returns to complete the message, raises to have it redelivered."""
    if services.jobs is None:
        raise RuntimeError("a job message arrived but async jobs are not configured in this process")
    await services.jobs.handle_message(job_message(msg), services.chat)


async def on_backup_timer(timer: func.TimerRequest, services: Services) -> None:
    await run_backup_check(services.backups, past_due=timer.past_due)


async def on_feedback_timer(timer: func.TimerRequest, services: Services) -> None:
    await run_feedback_pass(services.feedback_examples, past_due=timer.past_due)
