"""A retraining schedule in words ("monthly, on the 1st at 02:00 UTC"), its validation for
forms, and the one answer to "when does this problem retrain?" that the catalog and the
governance pages both give (the organisation's schedule, else the problem's default)."""

from __future__ import annotations

from dataclasses import dataclass

from celery.schedules import crontab

DAYS = {"0": "Sundays", "1": "Mondays", "2": "Tuesdays", "3": "Wednesdays", "4": "Thursdays",
        "5": "Fridays", "6": "Saturdays", "7": "Sundays"}


def validate_cron(cron: str) -> str:
    """The cron line, normalised; ValueError with the reason when it is not one."""
    parts = (cron or "").split()
    if len(parts) != 5:
        raise ValueError("a cron schedule has five fields: minute hour day month weekday "
                         "(for example 0 3 * * 1)")
    minute, hour, day, month, weekday = parts
    try:
        crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month,
                day_of_week=weekday)
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"not a valid cron schedule: {cron!r} ({exc})") from None
    return " ".join(parts)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def cron_in_words(cron: str) -> str:
    """Plain words for the common shapes; other lines are quoted as they are."""
    parts = (cron or "").split()
    if len(parts) != 5:
        return f"cron {cron}"
    minute, hour, day, month, weekday = parts
    if not (minute.isdigit() and hour.isdigit()) or month != "*":
        return f"cron {cron} (UTC)"
    at = f"at {int(hour):02d}:{int(minute):02d} UTC"
    if day == "*" and weekday == "*":
        return f"daily {at}"
    if day == "*" and weekday in DAYS:
        return f"weekly, on {DAYS[weekday]} {at}"
    if day.isdigit() and weekday == "*":
        return f"monthly, on the {_ordinal(int(day))} {at}"
    return f"cron {cron} (UTC)"


@dataclass(frozen=True)
class ScheduleStatus:
    words: str
    cron: str | None
    active: bool  # a beat task exists and is enabled
    source: str  # "organisation" or "default"
    last_tick: str = ""  # when the schedule last fired, and what came of it

    @property
    def sentence(self) -> str:
        if self.source == "organisation":
            return f"Retrains {self.words}" + ("" if self.active else " (paused)") + "."
        return (f"Default schedule: {self.words}; not active until an admin saves it on the "
                "problem's governance page.")


def schedule_status(*, organisation, vertical: str, problem: str, default_cron: str
                    ) -> ScheduleStatus:
    from governance.schedules import schedule_for

    schedule = schedule_for(organisation=organisation, vertical=vertical, problem=problem) \
        if organisation is not None else None
    task = schedule.periodic_task if schedule is not None else None
    if task is None:
        return ScheduleStatus(words=cron_in_words(default_cron), cron=default_cron,
                              active=False, source="default")
    if task.crontab is not None:
        c = task.crontab
        cron = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
        words = cron_in_words(cron)
    else:
        cron = None
        words = f"every {task.interval.every} {task.interval.period}"
    last = (f"last tick {schedule.last_tick_at:%Y-%m-%d %H:%M}: "
            f"{schedule.last_outcome or '–'}" if schedule.last_tick_at else "never ticked yet")
    return ScheduleStatus(words=words, cron=cron, active=bool(task.enabled),
                          source="organisation", last_tick=last)
