# A counter that shows what faucet's reconnects keep (docs/shiny.md): the count survives a
# dropped connection, and the ticks R produces while the browser is away arrive when it
# is back. It also shows the worker, its R process and the FAUCET_SESSION_ID faucet sends.
#
# For the tests: window.tickLog lists every tick the page received, in order; with
# COUNTER_TICKS_FILE set, R also writes its latest tick there.
library(shiny)

ui <- fluidPage(
  tags$script(HTML(
    "window.tickLog = [];
     $(document).on('shiny:value', function(e) {
       if (e.name === 'ticks') window.tickLog.push(Number(e.value));
     });")),
  titlePanel("faucet + Shiny: a counter that survives reconnects"),
  actionButton("add", "Add one"),
  h3("Count: ", textOutput("count", inline = TRUE)),
  p("Ticks: ", textOutput("ticks", inline = TRUE)),
  p("Worker ", textOutput("worker", inline = TRUE), ", R process ",
    textOutput("pid", inline = TRUE)),
  p("Session ", textOutput("session", inline = TRUE))
)

server <- function(input, output, session) {
  count <- reactiveVal(0)
  observeEvent(input$add, count(count() + 1))
  output$count <- renderText(count())

  ticks <- reactiveVal(0)
  ticks_file <- Sys.getenv("COUNTER_TICKS_FILE")
  observe({
    invalidateLater(250)
    tick <- isolate(ticks()) + 1
    ticks(tick)
    if (nzchar(ticks_file)) writeLines(as.character(tick), ticks_file)
  })
  output$ticks <- renderText(ticks())

  output$worker <- renderText(Sys.getenv("FAUCET_WORKER_ID"))
  output$pid <- renderText(Sys.getpid())
  output$session <- renderText(session$request$HTTP_FAUCET_SESSION_ID)
}

shinyApp(ui, server)
