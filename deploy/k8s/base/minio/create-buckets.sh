#!/bin/sh
# Creates the buckets and the services' S3 user (policy: these buckets only). Idempotent: the Job
# may run again on every apply.
set -eu
attempt=0
until mc alias set veil "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge 60 ]; then
        echo "MinIO at $MINIO_ENDPOINT did not answer in 5 minutes" >&2
        exit 1
    fi
    sleep 5
done
for bucket in veil veil-models; do
    mc mb --ignore-existing "veil/$bucket"
done
mc admin policy create veil veil-services /scripts/services-policy.json
mc admin user add veil "$SERVICE_ACCESS_KEY" "$SERVICE_SECRET_KEY"
# Attaching a policy twice is an error; the mc image has no grep.
case "$(mc admin user info veil "$SERVICE_ACCESS_KEY")" in
    *veil-services*) ;;
    *) mc admin policy attach veil veil-services --user "$SERVICE_ACCESS_KEY" ;;
esac
echo "buckets and user ready"
