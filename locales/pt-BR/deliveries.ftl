# O registro de entregas e o detalhe de uma entrega.

breadcrumb-hook = Gancho
deliveries-title = Entregas
deliveries-title-failures = Entregas: falhas
deliveries-test = Teste
deliveries-backfill = Envio retroativo
deliveries-attempt = tentativa { $attempt }
deliveries-loading = Carregando…
deliveries-open = Abrir esta entrega
deliveries-no-failure = Nenhuma entrega com falha.
deliveries-none-yet = Nenhuma entrega ainda.
deliveries-more = Mais entregas

delivery-title = Entrega { $id }
delivery-request = Solicitação
delivery-headers = Cabeçalhos
delivery-payload = Carga útil
delivery-response = Resposta
delivery-no-answer = Nenhuma resposta HTTP
delivery-body = Corpo
delivery-formatted = Formatado
