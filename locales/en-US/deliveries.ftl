# The deliveries log and one delivery's detail.

breadcrumb-hook = Hook
deliveries-title = Deliveries
deliveries-title-failures = Deliveries: failures
deliveries-test = Test
deliveries-backfill = Backfill
deliveries-attempt = attempt { $attempt }
deliveries-loading = Loading…
deliveries-open = Open this delivery
deliveries-no-failure = No failed delivery.
deliveries-none-yet = No delivery yet.
deliveries-more = More deliveries

delivery-title = Delivery { $id }
delivery-request = Request
delivery-headers = Headers
delivery-payload = Payload
delivery-response = Response
delivery-no-answer = No HTTP answer
delivery-body = Body
delivery-formatted = Formatted
