"""Drive the Langfuse SDK (v3+, OTel-based) over the real `openai` client; its OTLP/HTTP protobuf export
goes to a loopback capture server standing in for Langfuse's `/api/public/otel/v1/traces`.

Run from .envs/fmt-langfuse (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_langfuse.py --base-url http://127.0.0.1:PORT/v1 --langfuse-host http://127.0.0.1:PORT2

The scenario is tests/instrumented_calls.py's (plain call, tool-call round trip, streamed call, a
429), inside one `support_ticket` span whose trace-level attributes come from
`propagate_attributes` (user, session, metadata tenant/feature) and a prompt version, as the
Langfuse docs show. `langfuse.openai` makes one generation per call (model, usage_details, input,
output, level ERROR for the failure).
"""

from __future__ import annotations

import argparse
import os
import sys

import instrumented_calls as calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--langfuse-host", required=True)
    args = ap.parse_args()
    os.environ.update({"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test-not-a-secret",
                       "LANGFUSE_HOST": args.langfuse_host, "LANGFUSE_BASE_URL": args.langfuse_host,
                       "LANGFUSE_TRACING_ENVIRONMENT": "prod", "LANGFUSE_RELEASE": "2.3.1"})
    import openai as openai_mod
    from langfuse import get_client, propagate_attributes
    from langfuse.openai import OpenAI

    langfuse = get_client()
    client = OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    with langfuse.start_as_current_observation(as_type="span", name="support_ticket"), propagate_attributes(
            user_id=calls.USER_ID, session_id=calls.SESSION_ID,
            metadata={"tenant": calls.TENANT, "feature": calls.FEATURE, "prompt_version": calls.PROMPT_VERSION}):
        calls.run_calls(client, openai_mod.RateLimitError)
    langfuse.flush()
    langfuse.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
