#!/bin/sh
# The image's roles. docker/compose.yml runs one per service:
#   migrate      apply database migrations, then exit
#   web          gunicorn on :8000
#   worker-cpu   Celery worker for $TESSERA_CPU_WORKER_QUEUES (default: "default")
#   worker-gpu   Celery worker for "training": solo pool, one task at a time, so CUDA is
#                initialised once in the worker's own process, never in a forked child
#   beat         Celery beat on the database scheduler (run exactly one)
#   healthcheck  exit 0 when this container's role answers
#   manage ...   any manage.py command;  anything else runs as given
set -eu

celery_app="celery -A config.celery_app"

case "${1:-web}" in
    migrate)
        exec python manage.py migrate --noinput
        ;;
    web)
        # Workers, threads, timeout, preloading: docker/gunicorn.conf.py (the API benchmark
        # serves the app with the same file).
        exec gunicorn config.wsgi:application -c "$(dirname "$0")/gunicorn.conf.py" \
            --bind 0.0.0.0:8000
        ;;
    worker-cpu)
        exec $celery_app worker -n "worker-cpu@%h" -Q "${TESSERA_CPU_WORKER_QUEUES:-default}" \
            --concurrency "${CELERY_CPU_CONCURRENCY:-2}" -l "${LOG_LEVEL:-INFO}"
        ;;
    worker-gpu)
        exec $celery_app worker -n "worker-gpu@%h" -Q training -P solo --concurrency 1 \
            -l "${LOG_LEVEL:-INFO}"
        ;;
    beat)
        exec $celery_app beat -l "${LOG_LEVEL:-INFO}" \
            --scheduler django_celery_beat.schedulers:DatabaseScheduler \
            --pidfile /tmp/celerybeat.pid
        ;;
    healthcheck)
        case "${2:-web}" in
            web)
                # /healthz checks the database and the broker, needs no login and is
                # exempt from the HTTPS redirect; the Host header satisfies ALLOWED_HOSTS.
                exec python -c 'import urllib.request as u; u.urlopen(u.Request("http://127.0.0.1:8000/healthz", headers={"Host": "localhost"}), timeout=5)'
                ;;
            worker-cpu|worker-gpu)
                exec $celery_app inspect ping --timeout 10 -d "$2@$(hostname)"
                ;;
            *)
                echo "healthcheck: unknown role $2" >&2
                exit 2
                ;;
        esac
        ;;
    manage)
        shift
        exec python manage.py "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
