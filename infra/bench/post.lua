-- infra/bench/post.lua — wrk script: send every request as a bodyless POST.
wrk.method = "POST"
