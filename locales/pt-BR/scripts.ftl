# A página Scripts: a pasta de scripts, os nós, os gatilhos, os arquivos e os eventos de recurso.

scripts-title = Scripts
scripts-lead = A pasta <code>{ $folder }</code>, conforme carregada em { $time }.
scripts-lead-reload = O herald a recarrega quando um arquivo muda; um arquivo que não compila mantém a versão anterior ativa.
scripts-errors = { $count ->
        [one] { $count } script não compila.
       *[other] { $count } scripts não compilam.
    } Veja a linha e a coluna abaixo.
scripts-missing-trigger = O gatilho <strong>{ $trigger }</strong> está selecionado em { $count ->
        [one] { $count } gancho
       *[other] { $count } ganchos
    }, mas nenhum arquivo <code>GetWebhookResponseBody_{ $trigger }.rhai</code> o define mais.

scripts-nodes = Nós
scripts-nodes-intro = Os processos do herald neste banco de dados. Um de cada vez consome o log de alterações: os scripts dele decidem quais eventos são disparados e geram o conteúdo deles.
scripts-nodes-served-by = Esta página foi servida por <strong>{ $node }</strong>.
scripts-nodes-differ = Os nós não executam os mesmos scripts: compare os conjuntos de scripts abaixo. Os eventos são gerados pelos scripts do nó consumidor.
scripts-node = Nó
scripts-node-state = Estado
scripts-node-role = Função
scripts-node-heartbeat = Último sinal de vida
scripts-node-script-set = Conjunto de scripts
scripts-node-started = Iniciado
scripts-node-version = Versão
scripts-node-up = ativo
scripts-node-gone = ausente
scripts-node-consumer = consome o log de alterações
scripts-node-deliverer = entrega e atende requisições
scripts-node-heartbeat-ago = há { $seconds } s

scripts-triggers = Gatilhos
scripts-no-trigger = Nenhum script de corpo define um gatilho.
scripts-status-compiles = compila
scripts-status-error = erro
scripts-status-ok = ok
scripts-hooks = { $count ->
        [one] { $count } gancho
       *[other] { $count } ganchos
    }
scripts-version = versão
# A posição de um erro de script; 0 é uma linha ou coluna desconhecida.
scripts-error-at = Linha { $line ->
        [0] ?
       *[other] { $line }
    }, coluna { $column ->
        [0] ?
       *[other] { $column }
    }:
scripts-sample-payload = Exemplo de carga útil
scripts-no-sample = Ainda não há nenhuma linha para montar um exemplo.

scripts-files = Arquivos
scripts-file = Arquivo
scripts-file-kind = Tipo
scripts-file-trigger-or-table = Gatilho ou tabela
scripts-file-status = Status
scripts-file-live-version = Versão ativa
scripts-not-a-script-name = não é um nome de script
scripts-no-live-version = nenhuma

scripts-resource-events = Eventos de recurso
scripts-resource-events-intro = Cada tabela do aplicativo, como a grade de recursos a oferece: um envelope em torno da linha alterada, sem nenhum script.
scripts-resource-event = Evento
scripts-resource-hooks = Ganchos
scripts-resource-sample = Exemplo
scripts-show-sample = Mostrar
scripts-no-row-yet = nenhuma linha ainda
scripts-kind-body = corpo
scripts-kind-notification = notificação
